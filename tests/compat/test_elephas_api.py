"""Every public name of elephas 7.1, imported from its mirrored module, does what elephas documents.

Written from elephas' README and docstrings, with our own data: the module
layout (one import prefix to change), the enums, the MLlib and RDD adapters,
the model-type helpers, the Spark ML param mixins, `SparkMLlibModel`, the
positional-metrics repair and the memory of the RDD fit.
"""

import json
import warnings

import numpy as np
import pytest

# elephas module -> its public names (the migration doc's table lists the same).
ELEPHAS_API = {
    "spark_model": ["SparkModel", "AsynchronousSparkModel", "SparkMLlibModel", "load_spark_model"],
    "ml_model": ["ElephasEstimator", "ElephasTransformer", "load_ml_estimator",
                 "load_ml_transformer"],
    "enums.modes": ["Mode"],
    "enums.frequency": ["Frequency"],
    "enums": ["Mode", "Frequency"],
    "utils.rdd_utils": ["to_simple_rdd", "to_labeled_point", "from_labeled_point",
                        "encode_label", "lp_to_simple_rdd"],
    "utils": ["to_simple_rdd", "to_labeled_point", "from_labeled_point", "encode_label",
              "lp_to_simple_rdd"],
    "utils.model_utils": ["ModelType", "LossModelTypeMapper", "ModelTypeEncoder", "as_enum",
                          "is_multiple_input_model", "is_multiple_output_model"],
    "ml.adapter": ["to_data_frame", "from_data_frame", "df_to_simple_rdd"],
    "ml.params": ["HasKerasModelConfig", "HasMode", "HasFrequency", "HasNumberOfClasses",
                  "HasCategoricalLabels", "HasEpochs", "HasBatchSize", "HasVerbosity",
                  "HasValidationSplit", "HasNumberOfWorkers", "HasKerasOptimizerConfig",
                  "HasMetrics", "HasLoss", "HasCustomObjects", "HasInferenceBatchSize"],
    "ml": ["to_data_frame", "from_data_frame", "df_to_simple_rdd", "HasMode", "HasLoss"],
    "mllib.adapter": ["to_matrix", "from_matrix", "to_vector", "from_vector"],
    "mllib": ["to_matrix", "from_matrix", "to_vector", "from_vector"],
}


@pytest.mark.parametrize("module", sorted(ELEPHAS_API))
def test_each_elephas_module_is_mirrored(module):
    import importlib

    mirrored = importlib.import_module(f"sparkeras.compat.elephas.{module}")
    missing = [name for name in ELEPHAS_API[module] if not hasattr(mirrored, name)]
    assert not missing, (module, missing)


def test_todays_package_level_names_still_import():
    from sparkeras.compat import elephas

    for name in ("ElephasCompatWarning", "ElephasEstimator", "ElephasTransformer", "SparkModel",
                 "load_ml_estimator", "load_ml_transformer", "load_spark_model", "to_data_frame",
                 "to_simple_rdd", "AsynchronousSparkModel", "SparkMLlibModel", "Mode"):
        assert getattr(elephas, name) is not None
    assert elephas.SparkModel is elephas.spark_model.SparkModel
    with pytest.raises(AttributeError):
        elephas.HyperParamModel  # noqa: B018 (removed from elephas in 3.0)


def test_enums_are_strings():
    from sparkeras.compat.elephas.enums.frequency import Frequency
    from sparkeras.compat.elephas.enums.modes import Mode

    assert [m.value for m in Mode] == ["synchronous", "asynchronous", "hogwild"]
    assert [f.value for f in Frequency] == ["epoch", "batch"]
    assert Mode.HOGWILD == "hogwild" and str(Frequency.BATCH) == "batch"
    assert json.dumps({"mode": Mode.ASYNCHRONOUS}) == '{"mode": "asynchronous"}'


def test_mllib_matrices_and_vectors_round_trip():
    from pyspark.mllib.linalg import DenseMatrix, DenseVector

    from sparkeras.compat.elephas.mllib.adapter import (
        from_matrix,
        from_vector,
        to_matrix,
        to_vector,
    )

    array = np.arange(6, dtype="float64").reshape(2, 3)
    matrix = to_matrix(array)
    assert isinstance(matrix, DenseMatrix) and (matrix.numRows, matrix.numCols) == (2, 3)
    np.testing.assert_array_equal(from_matrix(matrix), array)  # not transposed
    vector = to_vector(np.array([1.0, -2.0]))
    assert isinstance(vector, DenseVector)
    np.testing.assert_array_equal(from_vector(vector), [1.0, -2.0])
    with pytest.raises(ValueError, match=r"2-D numpy array. Received: an array with shape \(3,\)"):
        to_matrix(np.zeros(3))
    with pytest.raises(ValueError, match=r"1-D numpy array. Received: an array with shape"):
        to_vector(np.zeros((2, 2)))


def test_encode_label():
    from sparkeras.compat.elephas.utils.rdd_utils import encode_label

    np.testing.assert_array_equal(encode_label(2.0, 4), [0.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"in \[0, nb_classes=3\). Received: label=3"):
        encode_label(3, 3)


@pytest.mark.spark
def test_simple_rdd_slices_keep_tasks_small(spark):
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    sc = spark.sparkContext
    small = to_simple_rdd(sc, np.zeros((100, 4), "float32"), np.zeros(100))
    assert small.getNumPartitions() == sc.defaultParallelism
    x = np.zeros((2600, 2048), "float32")  # 21 MB: three slices of at most 8 MB
    big = to_simple_rdd(sc, x, np.arange(2600))
    assert big.getNumPartitions() == 3
    assert big.map(lambda pair: int(pair[1])).collect() == list(range(2600))  # in order


@pytest.mark.spark
def test_labeled_points_to_and_from_numpy(spark):
    from pyspark.mllib.regression import LabeledPoint

    from sparkeras.compat.elephas.utils.rdd_utils import (
        from_labeled_point,
        lp_to_simple_rdd,
        to_labeled_point,
    )

    sc = spark.sparkContext
    x = np.arange(12, dtype="float32").reshape(4, 3)
    one_hot = np.eye(3)[[0, 2, 1, 2]]
    points = to_labeled_point(sc, x, one_hot, categorical=True)
    first = points.first()
    assert isinstance(first, LabeledPoint) and first.label == 0.0
    assert points.map(lambda p: p.label).collect() == [0.0, 2.0, 1.0, 2.0]
    features, labels = from_labeled_point(points, categorical=True)  # 3 classes found
    np.testing.assert_array_equal(features, x)
    np.testing.assert_array_equal(labels, one_hot)
    _, wide = from_labeled_point(points, categorical=True, nb_classes=5)
    assert wide.shape == (4, 5)
    pairs = lp_to_simple_rdd(points, categorical=True).collect()
    np.testing.assert_array_equal(np.stack([y for _, y in pairs]), one_hot)
    np.testing.assert_array_equal(np.stack([x_ for x_, _ in pairs]), x)
    plain = to_labeled_point(sc, x, np.array([0.5, 1.5, 2.5, 3.5]))
    assert [y for _, y in lp_to_simple_rdd(plain).collect()] == [0.5, 1.5, 2.5, 3.5]
    _, raw = from_labeled_point(plain)
    np.testing.assert_array_equal(raw, [0.5, 1.5, 2.5, 3.5])


@pytest.mark.spark
def test_data_frames_to_and_from_numpy(spark):
    from sparkeras.compat.elephas.ml.adapter import (
        df_to_simple_rdd,
        from_data_frame,
        to_data_frame,
    )

    x = np.arange(8, dtype="float32").reshape(4, 2)
    one_hot = np.eye(2)[[1, 0, 0, 1]]
    df = to_data_frame(spark.sparkContext, x, one_hot, categorical=True)
    assert df.columns == ["features", "label"]
    features, labels = from_data_frame(df, categorical=True, nb_classes=2)
    np.testing.assert_array_equal(features, x)
    np.testing.assert_array_equal(labels, one_hot)
    pairs = df_to_simple_rdd(df, categorical=True).collect()  # classes found: 2
    np.testing.assert_array_equal(np.stack([y for _, y in pairs]), one_hot)
    arrays = spark.createDataFrame([([1.0, 2.0], 3.5)], "inputs array<double>, target double")
    [(row_x, row_y)] = df_to_simple_rdd(arrays, features_col="inputs", label_col="target").collect()
    np.testing.assert_array_equal(row_x, [1.0, 2.0])
    assert row_y == 3.5


def test_model_type_helpers():
    import keras

    from sparkeras.compat.elephas.utils.model_utils import (
        LossModelTypeMapper,
        ModelType,
        ModelTypeEncoder,
        as_enum,
        is_multiple_input_model,
        is_multiple_output_model,
    )

    mapper = LossModelTypeMapper()
    assert mapper is LossModelTypeMapper()  # one shared instance, as in elephas
    assert mapper.get_model_type("mae") is ModelType.REGRESSION
    assert mapper.get_model_type("categorical_crossentropy") is ModelType.CLASSIFICATION
    assert mapper.get_model_type("my_unregistered_loss") is None

    def quantile_loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred))

    LossModelTypeMapper().register_loss(quantile_loss, ModelType.REGRESSION)
    assert mapper.get_model_type("quantile_loss") is ModelType.REGRESSION
    assert mapper.get_model_type(quantile_loss) is ModelType.REGRESSION
    with pytest.raises(ValueError, match="model_type must be ModelType"):
        mapper.register_loss("x", "regression")

    text = json.dumps({"model_type": ModelType.REGRESSION}, cls=ModelTypeEncoder)
    assert text == '{"model_type": {"__enum__": "ModelType.REGRESSION"}}'
    assert json.loads(text, object_hook=as_enum) == {"model_type": ModelType.REGRESSION}
    with pytest.raises(ValueError, match="must name a ModelType member"):
        json.loads('{"__enum__": "ModelType.CLUSTERING"}', object_hook=as_enum)

    a, b = keras.Input((3,)), keras.Input((2,))
    joined = keras.layers.Concatenate()([a, b])
    two_in = keras.Model([a, b], keras.layers.Dense(1)(joined))
    two_out = keras.Model(a, [keras.layers.Dense(1)(a), keras.layers.Dense(2)(a)])
    assert is_multiple_input_model(two_in) and not is_multiple_output_model(two_in)
    assert is_multiple_output_model(two_out) and not is_multiple_input_model(two_out)


@pytest.mark.parametrize(
    "mixin, param, suffix, default",
    [("HasKerasModelConfig", "keras_model_config", "keras_model_config", None),
     ("HasMode", "mode", "mode", "synchronous"),
     ("HasFrequency", "frequency", "frequency", "epoch"),
     ("HasNumberOfClasses", "nb_classes", "nb_classes", 10),
     ("HasCategoricalLabels", "categorical", "categorical_labels", True),
     ("HasEpochs", "epochs", "epochs", 10),
     ("HasBatchSize", "batch_size", "batch_size", 32),
     ("HasVerbosity", "verbose", "verbosity", 0),
     ("HasValidationSplit", "validation_split", "validation_split", 0.1),
     ("HasNumberOfWorkers", "num_workers", "num_workers", None),
     ("HasKerasOptimizerConfig", "optimizer_config", "optimizer_config", None),
     ("HasMetrics", "metrics", "metrics", ["acc"]),
     ("HasLoss", "loss", "loss", None),
     ("HasCustomObjects", "custom_objects", "custom_objects", {}),
     ("HasInferenceBatchSize", "inference_batch_size", "inference_batch_size", None)],
)
def test_param_mixins(mixin, param, suffix, default):
    from sparkeras.compat.elephas.ml import params

    stage = type("Stage", (getattr(params, mixin),), {})()
    if mixin in ("HasKerasModelConfig", "HasLoss"):  # elephas gives these no default
        assert not stage.isDefined(getattr(stage, param))
    else:
        assert getattr(stage, f"get_{suffix}")() == default
    assert getattr(stage, f"set_{suffix}")("value") is stage
    assert getattr(stage, f"get_{suffix}")() == "value"
    assert stage.getOrDefault(param) == "value"


def test_deprecated_column_setters_warn_as_elephas_does():
    from sparkeras.compat.elephas.ml_model import ElephasEstimator

    estimator = ElephasEstimator()
    for setter, param in (("setFeaturesCol", "featuresCol"), ("setLabelCol", "labelCol"),
                          ("setOutputCol", "outputCol")):
        with pytest.warns(DeprecationWarning, match=f"pass {param} to the constructor"):
            assert getattr(estimator, setter)("column") is estimator
        assert estimator.getOrDefault(param) == "column"
    assert ElephasEstimator(outputCol="out").getOutputCol() == "out"


def _dense_model(outputs, activation=None):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(outputs, activation=activation)])


@pytest.mark.spark
@pytest.mark.parametrize("model_type", ["enum", "name"])
def test_transformer_takes_an_enum_model_type_and_saves_it(spark, tmp_path, model_type):
    from pyspark.ml.linalg import Vectors

    from sparkeras.compat.elephas.ml_model import ElephasTransformer, load_ml_transformer
    from sparkeras.compat.elephas.utils.model_utils import ModelType

    model = _dense_model(1)
    transformer = ElephasTransformer(
        keras_model_config=model.to_json(),
        weights=model.get_weights(),
        model_type=ModelType.REGRESSION if model_type == "enum" else "regression",
        inference_batch_size=8,
    )
    assert transformer.model_type is ModelType.REGRESSION
    assert transformer.get_config()["model_type"] is ModelType.REGRESSION
    path = str(tmp_path / "transformer.h5")
    transformer.save(path)  # JSON with ModelTypeEncoder
    loaded = load_ml_transformer(path)
    assert loaded.model_type is ModelType.REGRESSION and loaded.get_inference_batch_size() == 8
    x = np.random.default_rng(0).normal(size=(10, 4))
    df = spark.createDataFrame([(Vectors.dense(row),) for row in x], ["features"])
    result = loaded.transform(df)
    assert dict(result.dtypes)["prediction"] == "double"
    predicted = np.array([row.prediction for row in result.collect()])
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0)[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match="must name a ModelType member"):
        ElephasTransformer(model_type="clustering")


@pytest.mark.spark
def test_registered_custom_regression_loss_gives_a_number_column(spark):
    import keras

    from sparkeras.compat.elephas.ml.adapter import to_data_frame
    from sparkeras.compat.elephas.ml_model import ElephasEstimator
    from sparkeras.compat.elephas.utils.model_utils import LossModelTypeMapper, ModelType

    def absolute_gap(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)

    LossModelTypeMapper().register_loss(absolute_gap, ModelType.REGRESSION)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = x @ np.array([1.0, -1.0, 0.5, 2.0], dtype="float32")
    estimator = ElephasEstimator(
        keras_model_config=_dense_model(1).to_json(), loss="absolute_gap",
        custom_objects={"absolute_gap": absolute_gap}, metrics=[], categorical=False,
        optimizer_config=keras.optimizers.serialize(keras.optimizers.Adam(0.05)),
        epochs=15, batch_size=32, validation_split=0.0, num_workers=2,
    )
    fitted = estimator.fit(to_data_frame(spark.sparkContext, x, y))
    assert fitted.model_type is ModelType.REGRESSION
    result = fitted.transform(to_data_frame(spark.sparkContext, x[:64], y[:64]))
    assert dict(result.dtypes)["prediction"] == "double"
    rows = result.toPandas()
    assert float(np.mean(np.abs(rows["prediction"] - rows["label"]))) < 0.5


@pytest.mark.spark
def test_mllib_model_trains_on_labeled_points(spark, tmp_path):
    import keras
    from pyspark.mllib.linalg import DenseMatrix, DenseVector

    from sparkeras.compat.elephas.mllib.adapter import to_matrix, to_vector
    from sparkeras.compat.elephas.spark_model import SparkMLlibModel, load_spark_model
    from sparkeras.compat.elephas.utils.rdd_utils import to_labeled_point

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 4)).astype("float32")
    classes = np.digitize(x[:, 0] + x[:, 1], [-0.7, 0.7])
    model = _dense_model(3, "softmax")
    model.compile(keras.optimizers.Adam(0.05), "categorical_crossentropy", metrics=["acc"])
    lp_rdd = to_labeled_point(spark.sparkContext, x, np.eye(3)[classes], categorical=True)
    spark_model = SparkMLlibModel(model, frequency="epoch", mode="synchronous", num_workers=2)
    history = spark_model.train(lp_rdd, epochs=8, batch_size=32, verbose=0,
                                validation_split=0.1, categorical=True, nb_classes=3)
    assert len(history.history["val_acc"]) == 8 and history.history["acc"][-1] > 0.8
    expected = spark_model.master_network.predict(x[:20], verbose=0)
    matrix = spark_model.predict(to_matrix(x[:20]))
    assert isinstance(matrix, DenseMatrix)
    np.testing.assert_allclose(matrix.toArray(), expected, atol=1e-5)
    vector = spark_model.predict(to_vector(x[0]))
    assert isinstance(vector, DenseVector)
    np.testing.assert_allclose(vector.toArray(), expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="takes an MLlib Matrix or Vector"):
        spark_model.predict(x[:2])
    path = str(tmp_path / "mllib.keras")
    spark_model.save(path)
    loaded = load_spark_model(path)
    assert type(loaded) is SparkMLlibModel and loaded.num_workers == 2


@pytest.mark.spark
def test_positional_metrics_are_repaired_and_the_fit_caches_nothing(spark, tmp_path):
    """elephas' examples: compile(opt, loss, ["acc"]); the RDD fit caches no rows in the JVM."""
    import keras

    from sparkeras.compat.elephas import _warnings
    from sparkeras.compat.elephas.spark_model import (
        AsynchronousSparkModel,
        SparkModel,
        load_spark_model,
    )
    from sparkeras.compat.elephas.utils.rdd_utils import to_simple_rdd

    def persisted():
        """(id, bytes in memory, bytes on disk) of each RDD Spark holds persisted."""
        infos = spark.sparkContext._jsc.sc().getRDDStorageInfo()
        return {(info.id(), info.memSize(), info.diskSize()) for info in infos}

    class StorageProbe(keras.callbacks.Callback):
        """Records, while the fit runs, what this fit made Spark persist."""

        def __init__(self):
            super().__init__()
            self.before, self.seen = persisted(), []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append(sorted(persisted() - self.before))

    _warnings._warned.clear()
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4)).astype("float32")
    y = np.eye(2)[(x.sum(axis=1) > 0).astype(int)]
    rdd = to_simple_rdd(spark.sparkContext, x, y)
    models = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            model = _dense_model(2, "softmax")
            model.compile(keras.optimizers.SGD(learning_rate=0.1), "categorical_crossentropy",
                          ["acc"])
            models.append(model)
        spark_model = SparkModel(models[0], num_workers=2)
        AsynchronousSparkModel(models[1], num_workers=2)
    repairs = [w for w in caught if "Keras 3 reads a third positional" in str(w.message)]
    assert len(repairs) == 1  # one-time
    assert "model.compile(optimizer, loss, metrics=['acc'])" in str(repairs[0].message)
    assert models[1].get_compile_config()["loss_weights"] is None

    for split in (0.2, 0.0):
        probe = StorageProbe()
        history = spark_model.fit(rdd, epochs=2, batch_size=32, verbose=0,
                                  validation_split=split, callbacks=[probe])
        assert len(history.history["acc"]) == 2
        assert ("val_acc" in history.history) == bool(split)
        assert probe.seen == [[], []]  # nothing cached or persisted while it trains
    evaluated = spark_model.evaluate(x, y)  # [loss, acc]: the repaired metrics
    assert evaluated == pytest.approx(spark_model.master_network.evaluate(x, y, verbose=0),
                                      abs=1e-4)

    path = str(tmp_path / "async.keras")
    AsynchronousSparkModel(spark_model.master_network, mode="hogwild").save(path)
    loaded = load_spark_model(path)
    assert type(loaded) is AsynchronousSparkModel and loaded.mode == "hogwild"


def test_transformer_file_in_elephas_layout_loads(tmp_path):
    """elephas writes the weights as lists and the model type as an encoded enum."""
    import h5py

    from sparkeras.compat.elephas.ml_model import load_ml_transformer
    from sparkeras.compat.elephas.utils.model_utils import ModelType, ModelTypeEncoder

    model = _dense_model(3, "softmax")
    config = {"keras_model_config": model.to_json(), "labelCol": "y", "featuresCol": "x",
              "outputCol": "p", "weights": [w.tolist() for w in model.get_weights()],
              "model_type": ModelType.CLASSIFICATION,
              "epochs": 3}  # an estimator param, as earlier versions of this layer wrote
    path = str(tmp_path / "elephas-transformer.h5")
    with h5py.File(path, mode="w") as handle:
        handle.attrs["distributed_config"] = json.dumps(
            {"class_name": "ElephasTransformer", "config": config}, cls=ModelTypeEncoder
        ).encode("utf8")
    loaded = load_ml_transformer(path)
    assert loaded.model_type is ModelType.CLASSIFICATION
    assert (loaded.getFeaturesCol(), loaded.getLabelCol(), loaded.getOutputCol()) == ("x", "y", "p")
    for saved, original in zip(loaded.weights, model.get_weights(), strict=True):
        np.testing.assert_allclose(saved, original)
