"""The spark-submit entry of the `sparkeras` jobs.

spark-submit runs a Python file, not a console command, so point it at this
file; the arguments after it are those of the `sparkeras` command, and the
master and Spark settings are spark-submit's own:

    spark-submit --master spark://host:7077 "$(python -m sparkeras.submit)" \\
        train --data hdfs:///data/train.parquet --model mlp.keras --output trained.keras

`python -m sparkeras.submit` prints the path of this file.
"""

import os
import sys

__all__ = []

if __name__ == "__main__":
    if __spec__ is not None:  # python -m sparkeras.submit
        print(os.path.abspath(__file__))
        sys.exit(0)
    # Run as a file, Python put this package's folder first on sys.path, where its
    # modules (data, ml, jobs, ...) would shadow top-level modules of the same names:
    # put the folder holding the package there instead.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from sparkeras.cli import main

    sys.exit(main())
