"""SparkModel.export: a TensorFlow SavedModel that serves the trained model's predictions."""

import numpy as np
import pytest
from helpers import dense_classifier


@pytest.mark.spark
def test_saved_model_predicts_what_spark_predicts(digits, tmp_path):
    import tensorflow as tf

    from sparkeras import SparkModel

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    spark_model.fit(train_df, epochs=1, verbose=0)
    path = spark_model.export(str(tmp_path / "digits" / "1"))

    rows = spark_model.predict(test_df).select("features", "probability").collect()
    features = np.array([row.features for row in rows], dtype="float32")
    served = tf.saved_model.load(path)
    assert "serving_default" in served.signatures
    np.testing.assert_allclose(
        served.serve(features).numpy(), [row.probability for row in rows], rtol=1e-4, atol=1e-6
    )


def test_export_names_a_bad_path():
    from sparkeras import SparkModel

    with pytest.raises(TypeError, match="Received: path of type int"):
        SparkModel(dense_classifier()).export(1)
