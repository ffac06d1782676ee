"""KerasEstimator and KerasTransformer as Spark ML stages, on a real local[2] Spark."""

import os

import numpy as np
import pytest
from helpers import dense_classifier

_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_classifier(seed=0):
    """A compiled 3-class MLP for the 4 iris measurements."""
    return dense_classifier(inputs=4, classes=3, seed=seed, lr=0.05, hidden=16)


def feature_stages():
    from pyspark.ml.feature import StandardScaler, StringIndexer, VectorAssembler

    return [
        VectorAssembler(inputCols=_FEATURES, outputCol="raw"),
        StringIndexer(inputCol="species", outputCol="label"),
        StandardScaler(inputCol="raw", outputCol="features", withMean=True),
    ]


def accuracy(frame):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    return MulticlassClassificationEvaluator(metricName="accuracy").evaluate(frame)


@pytest.fixture(scope="module")
def iris(spark):
    """The 150 iris rows: four double columns, a string `species`, a boolean `holdout`."""
    import pandas as pd
    from sklearn.datasets import load_iris

    data = load_iris()
    frame = pd.DataFrame(data.data, columns=_FEATURES)
    frame["species"] = data.target_names[data.target]
    frame["holdout"] = np.arange(len(frame)) % 5 == 0
    return spark.createDataFrame(frame).cache()


@pytest.fixture(scope="module")
def pipeline_model(iris):
    from pyspark.ml import Pipeline

    from sparkeras import KerasEstimator

    estimator = KerasEstimator(
        model=iris_classifier(), epochs=15, batchSize=16, numWorkers=2, validationFraction=0.2
    )
    return Pipeline(stages=[*feature_stages(), estimator]).fit(iris)


@pytest.fixture(scope="module")
def prepared(iris, pipeline_model):
    """Iris with the `features` and `label` columns of the fitted feature stages."""
    from pyspark.ml import PipelineModel

    return PipelineModel(stages=pipeline_model.stages[:-1]).transform(iris).cache()


def test_params_are_typed_with_defaults_and_checked_when_set():
    from sparkeras import KerasEstimator

    estimator = KerasEstimator(model=iris_classifier(), numWorkers=2)
    assert (estimator.getEpochs(), estimator.getBatchSize(), estimator.getMode()) == (
        10,
        32,
        "synchronous",
    )
    assert estimator.getFeaturesCol() == "features" and estimator.getLabelCol() == "label"
    assert estimator.getProbabilityCol() == "probability" and estimator.getValidationCol() is None
    assert estimator.setFrequency(10) is estimator and estimator.getFrequency() == "10"
    assert estimator.getModel().count_params() == iris_classifier().count_params()
    for setter, value, message in [
        (estimator.setMode, "sync", "Received: mode='sync'"),
        (estimator.setEpochs, 0, "Received: epochs=0"),
        (estimator.setFrequency, "often", "Received: frequency='often'"),
        (estimator.setValidationFraction, 1.0, "Received: validationFraction=1.0"),
        (estimator.setModel, "missing.keras", "Received: model='missing.keras'"),
    ]:
        with pytest.raises(ValueError, match=message):
            setter(value)
    with pytest.raises(TypeError, match="model"):
        estimator.setModel(3)
    with pytest.raises(ValueError, match="has no Keras model"):
        KerasEstimator().getModel()


def test_copy_takes_extra_params_and_leaves_the_original_alone():
    from sparkeras import KerasEstimator

    estimator = KerasEstimator(model=iris_classifier(), epochs=4)
    copied = estimator.copy({estimator.epochs: 2, estimator.predictionCol: "class"})
    assert (copied.getEpochs(), copied.getPredictionCol()) == (2, "class")
    assert (estimator.getEpochs(), estimator.getPredictionCol()) == (4, "prediction")
    assert copied.uid == estimator.uid
    assert copied.getOrDefault("model") is estimator.getOrDefault("model")


@pytest.mark.spark
def test_pipeline_predicts_classes_and_probabilities(iris, pipeline_model):
    transformer = pipeline_model.stages[-1]
    scored = pipeline_model.transform(iris)
    schema = scored.schema
    assert schema["prediction"].dataType.simpleString() == "double"
    assert schema["probability"].dataType.simpleString() == "array<float>"
    assert scored.columns[: len(iris.columns)] == iris.columns
    assert scored.count() == iris.count()
    probabilities = np.array([row.probability for row in scored.select("probability").collect()])
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert accuracy(scored) > 0.85
    assert len(transformer.history["val_loss"]) == 15
    assert transformer.history["loss"][-1] < transformer.history["loss"][0]


@pytest.mark.spark
def test_transformer_prediction_is_the_argmax_of_the_keras_model(prepared, pipeline_model):
    from pyspark.sql import functions

    transformer = pipeline_model.stages[-1].copy({pipeline_model.stages[-1].probabilityCol: ""})
    rows = transformer.transform(prepared).select("features", "prediction").collect()
    assert "probability" not in transformer.transform(prepared).columns
    features = np.array([row.features.toArray() for row in rows], dtype="float32")
    expected = np.argmax(transformer.getModel().predict(features, verbose=0), axis=1)
    np.testing.assert_array_equal([row.prediction for row in rows], expected)
    taken = prepared.withColumn("probability", functions.lit(1.0))
    with pytest.raises(ValueError, match="Received: probabilityCol='probability'"):
        pipeline_model.stages[-1].transform(taken)


@pytest.mark.spark
def test_single_unit_model_writes_its_value_as_prediction(prepared, tmp_path):
    import keras

    from sparkeras import KerasTransformer

    keras.utils.set_random_seed(1)
    regressor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    path = str(tmp_path / "regressor.keras")
    regressor.save(path)
    rows = KerasTransformer(model=path).transform(prepared).select("features", "prediction")
    rows = rows.collect()
    features = np.array([row.features.toArray() for row in rows], dtype="float32")
    np.testing.assert_allclose(
        [row.prediction for row in rows], regressor.predict(features, verbose=0)[:, 0], rtol=1e-5
    )


@pytest.mark.spark
def test_fitted_pipeline_saves_and_loads_with_equal_predictions(iris, pipeline_model, tmp_path):
    from pyspark.ml import PipelineModel

    from sparkeras import KerasTransformer

    path = str(tmp_path / "pipeline-model")
    pipeline_model.write().overwrite().save(f"file://{path}")  # Hadoop URIs work too
    loaded = PipelineModel.load(path)
    stage = loaded.stages[-1]
    assert isinstance(stage, KerasTransformer) and stage.uid == pipeline_model.stages[-1].uid
    assert stage.getFeaturesCol() == "features" and stage.history is None
    stage_folder = os.path.join(path, "stages", f"3_{stage.uid}")
    assert os.path.isfile(os.path.join(stage_folder, "model.keras"))
    before = pipeline_model.transform(iris).select("prediction", "probability").collect()
    after = loaded.transform(iris).select("prediction", "probability").collect()
    assert [row.prediction for row in before] == [row.prediction for row in after]
    np.testing.assert_allclose(
        [row.probability for row in before], [row.probability for row in after], rtol=1e-6
    )


@pytest.mark.spark
def test_unfitted_pipeline_saves_and_loads_the_estimator(spark, tmp_path):
    from pyspark.ml import Pipeline

    from sparkeras import KerasEstimator, KerasTransformer

    model = iris_classifier()
    estimator = KerasEstimator(model=model, epochs=3, frequency="batch", validationCol="holdout")
    path = str(tmp_path / "pipeline")
    Pipeline(stages=[*feature_stages(), estimator]).write().save(path)
    loaded = Pipeline.load(path).getStages()[-1]
    assert isinstance(loaded, KerasEstimator) and loaded.uid == estimator.uid
    assert (loaded.getEpochs(), loaded.getFrequency(), loaded.getValidationCol()) == (
        3,
        "batch",
        "holdout",
    )
    for saved, original in zip(loaded.getModel().get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, original)
    with pytest.raises(ValueError, match="not a sparkeras.ml.transformer.KerasTransformer"):
        KerasTransformer.load(os.path.join(path, "stages", f"3_{estimator.uid}"))


@pytest.mark.spark
def test_validation_column_gives_val_metrics_and_bad_settings_fail_fast(prepared):
    from sparkeras import KerasEstimator
    from sparkeras.data import DataSchemaError

    estimator = KerasEstimator(model=iris_classifier(), epochs=2, numWorkers=2)
    fitted = estimator.copy({estimator.validationCol: "holdout"}).fit(prepared)
    assert len(fitted.history["val_accuracy"]) == 2
    with pytest.raises(DataSchemaError, match="Received: validationCol='species'"):
        estimator.copy({estimator.validationCol: "species"}).fit(prepared)
    both = {estimator.validationCol: "holdout", estimator.validationFraction: 0.2}
    with pytest.raises(ValueError, match="not both"):
        estimator.copy(both).fit(prepared)


@pytest.mark.spark
def test_cross_validator_picks_the_longer_training(prepared):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from sparkeras import KerasEstimator, KerasTransformer

    estimator = KerasEstimator(model=iris_classifier(), batchSize=16, numWorkers=2)
    grid = ParamGridBuilder().addGrid(estimator.epochs, [1, 15]).build()
    validator = CrossValidator(
        estimator=estimator,
        estimatorParamMaps=grid,
        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"),
        numFolds=2,
        seed=3,
    )
    fitted = validator.fit(prepared)
    assert len(fitted.avgMetrics) == 2
    assert fitted.avgMetrics[1] > fitted.avgMetrics[0], fitted.avgMetrics
    assert isinstance(fitted.bestModel, KerasTransformer)
    assert len(fitted.bestModel.history["loss"]) == 15
    assert accuracy(fitted.transform(prepared)) > 0.85


@pytest.mark.spark
def test_parallel_cross_validation_queues_fits_with_sequential_results(prepared):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from sparkeras import KerasEstimator

    estimator = KerasEstimator(model=iris_classifier(), epochs=2, numWorkers=1)
    grid = ParamGridBuilder().addGrid(estimator.batchSize, [8, 16]).build()

    def cross_validate(parallelism):
        validator = CrossValidator(
            estimator=estimator, estimatorParamMaps=grid, numFolds=2, seed=5,
            evaluator=MulticlassClassificationEvaluator(metricName="accuracy"),
            parallelism=parallelism,
        )
        return validator.fit(prepared).avgMetrics

    assert cross_validate(2) == pytest.approx(cross_validate(1), abs=1e-6)
