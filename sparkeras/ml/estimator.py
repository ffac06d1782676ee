"""`KerasEstimator`: distributed Keras training as a Spark ML `Estimator`.

Driver-side module. `fit` trains with `SparkModel.fit` (one barrier job,
parameter server on the driver) and returns a `KerasTransformer`.
"""

import threading

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.sql import functions, types

from sparkeras.ml.params import KerasEstimatorParams, frequency_value
from sparkeras.ml.persistence import KerasReadWrite
from sparkeras.ml.transformer import KerasTransformer

__all__ = ["KerasEstimator"]

# Fits started from several threads (CrossValidator(parallelism=N), Hyperopt's
# SparkTrials, Optuna) wait here for their turn: each fit trains alone, as it
# would one after the other, so its results do not depend on the others.
_FITS_IN_TURN = threading.Lock()


class KerasEstimator(Estimator, KerasEstimatorParams, KerasReadWrite):
    """Trains a compiled Keras model on a DataFrame across Spark executors.

    Each fit rebuilds a fresh model from the `model` param and trains it
    with `SparkModel` (`numWorkers` replicas whose weights a parameter server
    on the driver averages every `frequency`), so copies of the estimator,
    as `CrossValidator` makes them, all start from the same weights. The
    fitted `KerasTransformer` carries the trained model, the column params
    and the fit's `history`.

    A fit is one barrier Spark job that holds its task slots until it ends.
    Fits started from several threads (`CrossValidator(parallelism=2)`,
    tuning libraries' trial threads) are queued and train one at a time, so
    each gives what it would give alone.

    Validation rows, held out of training, give the `val_*` entries of the
    history: mark them with a boolean `validationCol`, or hold out a random
    `validationFraction` (split by `seed`).

    Args:
        model: A compiled `keras.Model`, or the path of a `.keras` file of one.
        featuresCol: Column of vectors, arrays or numbers feeding the model.
        labelCol: Label column: class index (int, or double as from
            `StringIndexer`), one-hot array, or float target(s).
        predictionCol: Output column of the predicted class (double) or value.
        probabilityCol: Output column of class probabilities; "" for none.
        epochs: Passes over the training data.
        batchSize: Samples per training step on each worker.
        mode: "synchronous", "asynchronous" or "hogwild".
        frequency: "epoch", "batch", or a number of steps between exchanges.
        numWorkers: Training tasks; every task slot if None.
        validationCol: Boolean column marking validation rows.
        validationFraction: Share of rows held out at random for validation.
        seed: Seed of the validation split and of the workers' shuffling.
        decode: Function, run on the executors, that turns a list of a binary
            (or string) feature column's values into a numpy array, one row
            per value; or `{column: function}`. Saved pickled by value.
        pruning: A `sparkeras.pruning.DNS` to prune while training.

    Example:
    >>> from pyspark.ml import Pipeline
    >>> from pyspark.ml.feature import StandardScaler, VectorAssembler
    >>> estimator = KerasEstimator(model=compiled_model, featuresCol="scaled",
    ...                            labelCol="label", epochs=10, numWorkers=2)
    >>> pipeline = Pipeline(stages=[
    ...     VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="raw"),
    ...     StandardScaler(inputCol="raw", outputCol="scaled"), estimator])
    >>> fitted = pipeline.fit(train_df)
    >>> fitted.transform(test_df).select("prediction", "probability").show()
    >>> fitted.write().overwrite().save("/models/pipeline")
    """

    @keyword_only
    def __init__(
        self,
        *,
        model=None,
        featuresCol="features",
        labelCol="label",
        predictionCol="prediction",
        probabilityCol="probability",
        epochs=10,
        batchSize=32,
        mode="synchronous",
        frequency="epoch",
        numWorkers=None,
        validationCol=None,
        validationFraction=0.0,
        seed=0,
        decode=None,
        pruning=None,
    ):
        super().__init__()
        self._setDefault(
            epochs=10,
            batchSize=32,
            mode="synchronous",
            frequency="epoch",
            validationFraction=0.0,
            seed=0,
        )
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        model=None,
        featuresCol="features",
        labelCol="label",
        predictionCol="prediction",
        probabilityCol="probability",
        epochs=10,
        batchSize=32,
        mode="synchronous",
        frequency="epoch",
        numWorkers=None,
        validationCol=None,
        validationFraction=0.0,
        seed=0,
        decode=None,
        pruning=None,
    ):
        """Sets the given params; see the class docstring. Returns self."""
        return self._set(**self._input_kwargs)

    def setLabelCol(self, value):
        """Sets `labelCol`. Returns self."""
        return self._set(labelCol=value)

    def setEpochs(self, value):
        """Sets `epochs`. Returns self."""
        return self._set(epochs=value)

    def setBatchSize(self, value):
        """Sets `batchSize`. Returns self."""
        return self._set(batchSize=value)

    def setMode(self, value):
        """Sets `mode`. Returns self."""
        return self._set(mode=value)

    def setFrequency(self, value):
        """Sets `frequency` ("epoch", "batch" or a number of steps). Returns self."""
        return self._set(frequency=value)

    def setPruning(self, value):
        """Sets `pruning` (a `sparkeras.pruning.DNS`). Returns self."""
        return self._set(pruning=value)

    def setNumWorkers(self, value):
        """Sets `numWorkers`. Returns self."""
        return self._set(numWorkers=value)

    def setValidationCol(self, value):
        """Sets `validationCol`. Returns self."""
        return self._set(validationCol=value)

    def setValidationFraction(self, value):
        """Sets `validationFraction`. Returns self."""
        return self._set(validationFraction=value)

    def setSeed(self, value):
        """Sets `seed`. Returns self."""
        return self._set(seed=value)

    def _fit(self, dataset):
        from sparkeras.options import TrainingConfig
        from sparkeras.spark_model import SparkModel

        model_bytes = self._model_bytes()
        train_df, validation_df = self._split(dataset)
        with _FITS_IN_TURN:
            spark_model = SparkModel(
                model_bytes.to_model(),
                mode=self.getMode(),
                frequency=frequency_value(self.getFrequency()),
                num_workers=self.getNumWorkers(),
                config=TrainingConfig(seed=self.getSeed()),
                pruning=self.getPruning(),
            )
            history = spark_model.fit(
                train_df,
                features_col=self.getFeaturesCol(),
                label_col=self.getLabelCol(),
                epochs=self.getEpochs(),
                batch_size=self.getBatchSize(),
                validation_data=validation_df,
                verbose=0,
                decode=self.getDecode(),
            )
        fitted = self._copyValues(KerasTransformer())._set(model=spark_model.model)
        fitted.history = dict(history.history)
        return fitted

    def _split(self, dataset):
        """Returns `(train_df, validation_df or None)` as the validation params say."""
        from sparkeras.data import DataSchemaError

        column, fraction = self.getValidationCol(), self.getValidationFraction()
        if column and fraction:
            raise ValueError(
                "Set validationCol or validationFraction, not both. "
                f"Received: validationCol={column!r}, validationFraction={fraction!r}"
            )
        if fraction:
            train_df, validation_df = dataset.randomSplit(
                [1.0 - fraction, fraction], seed=self.getSeed()
            )
            return train_df, validation_df
        if not column:
            return dataset, None
        if column not in dataset.columns or not isinstance(
            dataset.schema[column].dataType, types.BooleanType
        ):
            raise DataSchemaError(
                "validationCol must name a boolean column of the DataFrame, true on "
                f"validation rows. Columns: {dataset.columns}. Received: validationCol={column!r}"
            )
        is_validation = functions.coalesce(functions.col(f"`{column}`"), functions.lit(False))
        return dataset.filter(~is_validation), dataset.filter(is_validation)
