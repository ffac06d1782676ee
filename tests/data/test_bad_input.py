"""Bad input gets a clear error, and (where the schema tells) before any job."""

import numpy as np
import pandas as pd
import pytest
from helpers import dense_classifier, job_count

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def frame(spark):
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame({"features": list(rng.normal(size=(64, 4))), "label": rng.integers(0, 2, 64),
                        "name": ["x"] * 64, "c0": 1.0, "c1": 2.0})
    return spark.createDataFrame(pdf)


def _fails_before_any_job(spark, call, error, *fragments):
    before = job_count(spark)
    with pytest.raises(error) as info:
        call()
    assert job_count(spark) == before, "a Spark job ran before the error"
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_missing_column(spark, frame):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(inputs=4, classes=2), num_workers=2)
    _fails_before_any_job(spark, lambda: spark_model.fit(frame, features_col="feature"),
                          ValueError, "feature", "features")


def test_non_numeric_column(spark, frame):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(inputs=4, classes=2), num_workers=2)
    _fails_before_any_job(spark, lambda: spark_model.fit(frame, label_col="name"), ValueError,
                          "name", "StringIndexer")


def test_width_mismatch_of_numeric_columns(spark, frame):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(inputs=4, classes=2), num_workers=2)
    _fails_before_any_job(spark, lambda: spark_model.fit(frame, features_col=["c0", "c1"]),
                          ValueError, "c0", "4", "2")


def test_width_mismatch_of_assembled_vector(spark, frame):
    from pyspark.ml.feature import VectorAssembler

    from sparkeras import SparkModel

    assembled = VectorAssembler(inputCols=["c0", "c1"], outputCol="vec").transform(frame)
    spark_model = SparkModel(dense_classifier(inputs=4, classes=2), num_workers=2)
    _fails_before_any_job(spark, lambda: spark_model.fit(assembled, features_col="vec"),
                          ValueError, "vec", "4", "2")


def test_uncompiled_model(spark, frame):
    import keras

    from sparkeras import SparkModel

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    _fails_before_any_job(spark, lambda: SparkModel(model, num_workers=2).fit(frame),
                          ValueError, "compile")


def test_model_without_input_shape():
    import keras

    from sparkeras import SparkModel

    with pytest.raises(ValueError, match="keras.Input"):
        SparkModel(keras.Sequential([keras.layers.Dense(2)]))


def test_more_workers_than_task_slots(spark, frame):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(inputs=4, classes=2), num_workers=3)
    _fails_before_any_job(spark, lambda: spark_model.fit(frame), ValueError,
                          "num_workers=3", "2 task slots", "spark.task.cpus")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"mode": "sync"}, "mode='sync'"), ({"frequency": "step"}, "frequency='step'"),
     ({"frequency": 0}, "frequency=0"), ({"num_workers": 0}, "num_workers=0")],
)
def test_bad_constructor_options(kwargs, fragment):
    from sparkeras import SparkModel

    with pytest.raises(ValueError, match=fragment):
        SparkModel(dense_classifier(inputs=4, classes=2), **kwargs)


@pytest.mark.parametrize("kwargs, fragment", [({"epochs": 0}, "epochs=0"),
                                              ({"batch_size": -1}, "batch_size=-1")])
def test_bad_fit_options(spark, frame, kwargs, fragment):
    from sparkeras import SparkModel

    spark_model = SparkModel(dense_classifier(inputs=4, classes=2), num_workers=2)
    _fails_before_any_job(spark, lambda: spark_model.fit(frame, **kwargs), ValueError, fragment)


def test_not_a_dataframe():
    from sparkeras import SparkModel

    with pytest.raises(TypeError, match="DataFrame"):
        SparkModel(dense_classifier(inputs=4, classes=2)).fit(np.zeros((4, 4)))


def test_nulls_are_reported_with_the_column(spark):
    from sparkeras import SparkModel
    from sparkeras.data import DataContentError

    pdf = pd.DataFrame({"a": [1.0, None, 3.0, 4.0] * 8, "b": 1.0, "label": [0, 1] * 16})
    frame = spark.createDataFrame(pdf)
    spark_model = SparkModel(dense_classifier(inputs=2, classes=2), num_workers=2)
    with pytest.raises(DataContentError, match="'a'.*na.drop|na.drop.*'a'"):
        spark_model.fit(frame, features_col=["a", "b"], epochs=1, verbose=0)
