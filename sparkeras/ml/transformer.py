"""`KerasTransformer`: a trained Keras model as a Spark ML `Model` (a Transformer).

Driver-side module. `transform` runs `SparkModel.predict` (Arrow batches on
the executors, nothing collected) and, for classifiers, adds the predicted
class as a double.
"""

from pyspark import keyword_only
from pyspark.ml import Model

from sparkeras.ml.params import KerasModelParams
from sparkeras.ml.persistence import KerasReadWrite

__all__ = ["KerasTransformer"]


class KerasTransformer(Model, KerasModelParams, KerasReadWrite):
    """A Keras model that appends its predictions to a DataFrame.

    `KerasEstimator.fit` returns one; build one directly to serve a model
    trained elsewhere. A model with one output of shape `(None, k)`, k >= 2,
    is read as a classifier: `predictionCol` gets the argmax class (double)
    and `probabilityCol` the k outputs (`array<float>`, left out when set to
    ""), as `SparkModel.predict` does. Any other model writes its raw output
    to `predictionCol`. Every input column and row is kept, in order.

    `history` holds the per-epoch global metrics of the fit that made this
    model (`{"loss": [...], "val_accuracy": [...]}`); like the summaries of
    Spark's own models it is not saved, so it is None after `load`.

    Args:
        model: A `keras.Model` or the path of a `.keras` file.
        featuresCol: Column, of vectors, arrays or numbers, that feeds the model.
        predictionCol: Output column of the predicted class or value.
        probabilityCol: Output column of class probabilities; "" for none.
        decode: Function, run on the executors, that turns a list of a binary
            (or string) feature column's values into a numpy array, one row
            per value; or `{column: function}`. Saved pickled by value.

    Example:
    >>> transformer = KerasTransformer(model="digits.keras", featuresCol="features")
    >>> transformer.transform(test_df).select("label", "prediction", "probability").show()
    >>> transformer.write().overwrite().save("/models/digits-stage")
    """

    @keyword_only
    def __init__(
        self,
        *,
        model=None,
        featuresCol="features",
        predictionCol="prediction",
        probabilityCol="probability",
        decode=None,
    ):
        super().__init__()
        self.history = None
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        model=None,
        featuresCol="features",
        predictionCol="prediction",
        probabilityCol="probability",
        decode=None,
    ):
        """Sets the given params; see the class docstring. Returns self."""
        return self._set(**self._input_kwargs)

    def _transform(self, dataset):
        from sparkeras import options
        from sparkeras.inference import is_classifier
        from sparkeras.spark_model import SparkModel

        keras_model = self._model_bytes().shared_model()
        prediction, probability = self.getPredictionCol(), self.getProbabilityCol()
        _, output_shapes, _ = options.check_model(keras_model, compiled=False)
        if is_classifier(output_shapes):
            columns = ((self.predictionCol, prediction), (self.probabilityCol, probability))
            for param, name in columns:
                if name in dataset.columns:
                    raise ValueError(
                        f"The DataFrame already has a column named {name!r}. Set another "
                        f"{param.name}. Received: {param.name}={name!r}"
                    )
        return SparkModel(keras_model).predict(
            dataset, self.getFeaturesCol(), output_col=prediction, probability_col=probability,
            decode=self.getDecode(),
        )
