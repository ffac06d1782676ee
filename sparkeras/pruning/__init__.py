"""Network pruning for Keras 3: Dynamic Network Surgery and a magnitude schedule.

Neutral package (no Spark import). `DNS` and `magnitude(...)` are Keras
callbacks for a plain `model.fit`; `SparkModel(model, pruning=DNS())` prunes
a distributed fit (see docs/pruning.md); `report` and `strip` tell and
package the result.

Example:
>>> from sparkeras.pruning import DNS, report, strip
>>> model.fit(x, y, epochs=30, callbacks=[DNS()])
>>> print(report(model))
>>> strip(model).save("pruned.keras")
"""

from sparkeras.pruning.callbacks import DNS, magnitude
from sparkeras.pruning.summary import PruningReport, report, strip

__all__ = ["DNS", "PruningReport", "magnitude", "report", "strip"]
