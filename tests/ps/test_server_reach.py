"""A fit whose tasks cannot reach the parameter server fails at once, naming the setting.

The classic-session half; tests/driver/test_connect.py has the Spark Connect one.
"""

import pandas as pd
import pytest
from helpers import dense_classifier

pytestmark = pytest.mark.spark


def test_unreachable_server_fails_fast_naming_the_setting(spark):
    from sparkeras import SparkModel, TrainingConfig

    frame = spark.createDataFrame(
        pd.DataFrame({"features": [[0.5] * 64] * 64, "label": [1] * 64})
    ).repartition(2)
    # The server listens on 127.0.0.1; the tasks are sent to 127.0.0.2, where nothing does.
    config = TrainingConfig(server_host="127.0.0.1", server_advertised_host="127.0.0.2")
    spark_model = SparkModel(dense_classifier(), num_workers=2, config=config)
    with pytest.raises(ConnectionError, match="cannot reach the parameter server") as info:
        spark_model.fit(frame, epochs=1, verbose=0)
    assert "TrainingConfig(server_host=...)" in str(info.value)
    assert "Received: server_host='127.0.0.2'" in str(info.value)
    assert spark_model.workers == {}  # no task registered, and none was relaunched
