"""SparkModel: fit, evaluate and predict a Keras model on Spark DataFrames.

Driver-side module. Every argument is checked here, against the DataFrame's
schema and the session's settings, before any Spark job starts.
"""

import contextlib

from sparkeras import options, progress, session_access
from sparkeras.options import TrainingConfig
from sparkeras.placement import worker_frame
from sparkeras.slots import check_no_speculation, task_slots


def _check_frame(name, df):
    from pyspark.sql import DataFrame

    if not isinstance(df, DataFrame):
        raise TypeError(
            f"{name} must be a pyspark.sql.DataFrame; build one with "
            f"spark.createDataFrame(...). Received: {name}={type(df).__name__}"
        )
    return df


class SparkModel:
    """A Keras model that trains and predicts on Spark DataFrames.

    Executors each train a replica on their partition; a parameter server on
    the driver averages the replicas' weights every `frequency`.

    Args:
        model: A built (`keras.Input`-first) Keras model; compiled for `fit`
            and `evaluate`.
        mode: "synchronous" (default), "asynchronous" or "hogwild".
        frequency: When workers exchange weights: "epoch", "batch" or an int
            number of steps.
        num_workers: Training tasks; defaults to every task slot.
        config: A `TrainingConfig` for the rarely changed settings.
        custom_objects: Custom layers/losses needed to rebuild the model.
        pruning: A `sparkeras.pruning.DNS` to prune while training
            (synchronous mode; see docs/pruning.md).

    Example:
    >>> sm = SparkModel(model, mode="synchronous", frequency="epoch", num_workers=2)
    >>> history = sm.fit(train_df, features_col="features", label_col="label", epochs=5)
    >>> sm.evaluate(test_df)["accuracy"]
    >>> sm.predict(test_df).select("label", "prediction", "probability").show()
    """

    def __init__(self, model, mode="synchronous", frequency="epoch", num_workers=None,
                 config=None, custom_objects=None, pruning=None):
        from sparkeras.pruning.distributed import check_pruning

        options.check_model(model, compiled=False)
        self._model = model
        self.mode = options.check_mode(mode)
        self.frequency = frequency
        self._steps = options.steps_per_round(frequency)
        self.num_workers = (
            None if num_workers is None else options.check_positive_int("num_workers", num_workers)
        )
        self.config = config or TrainingConfig()
        self.custom_objects = custom_objects
        self.pruning = check_pruning(pruning, model, self.mode)
        self.training_summary = []
        self.workers = {}

    @property
    def model(self):
        """The Keras model on the driver, holding the trained global weights."""
        return self._model

    def fit(self, df, features_col="features", label_col="label", epochs=1, batch_size=32,
            validation_data=None, callbacks=None, *, verbose=1, checkpoint_dir=None,
            resume=False, decode=None):
        """Trains the model on `df` and returns a Keras `History`.

        Args:
            df: Training DataFrame.
            features_col: A column, a list of columns, or a list of column
                groups (one per model input).
            label_col: A column, or a list of columns (one per model output).
            epochs: Passes over the data.
            batch_size: Samples per step on each worker.
            validation_data: Optional DataFrame with the same columns; its
                metrics appear as `val_*` in the history.
            callbacks: Keras callbacks; they run on the driver with global logs
                (batch-level hooks at each progress report, every ~0.5 s,
                with the global running logs; `batch` counts all workers' steps).
            verbose: 0 silent, 1 a live progress bar per epoch (steps of all
                workers, samples/s, running loss; a widget in Jupyter), 2 one
                line per epoch, "auto" as 1.
            checkpoint_dir: Local path or `pyarrow.fs` URI where the global
                state is written (atomically) after every epoch.
            resume: Continue from the checkpoint in `checkpoint_dir`, for the
                remaining epochs of `epochs` in total.
            decode: A function, run on the executors, that turns a list of a
                binary (or string) column's values into a numpy array with
                one row per value (e.g. PNG bytes to `(n, H, W, C)` uint8), or
                `{column: function}`; shipped by value. See
                docs/input-kinds.md.

        Returns:
            A `keras.callbacks.History` with one global value per epoch.
        """
        import keras

        from sparkeras.common.plan import TrainPlan
        from sparkeras.data import projection
        from sparkeras.pruning.distributed import DriverPruning
        from sparkeras.ps.aggregation import Staleness
        from sparkeras.training import FitRun, ServerSettings, run_fit

        _check_frame("df", df)
        options.check_positive_int("epochs", epochs)
        options.check_positive_int("batch_size", batch_size)
        verbose = progress.check_verbose(verbose)
        spec = self._data_spec(df, features_col, label_col, compiled=True, decode=decode)
        spark = df.sparkSession
        num_workers = options.check_num_workers(self.num_workers, *task_slots(spark))
        check_no_speculation(spark)
        self._check_devices(spark, batch_size)
        validation = None
        if validation_data is not None:
            # Its own projection: its columns may be of another supported kind (vectors
            # from a VectorAssembler where training has arrays); both project alike.
            validation_spec = self._data_spec(_check_frame("validation_data", validation_data),
                                              features_col, label_col, compiled=True,
                                              decode=decode)
            validation = validation_data.select(projection(validation_spec))
        frame, _ = worker_frame(df.select(projection(spec)), num_workers, validation)
        resume_state = _resume_state(checkpoint_dir, resume, epochs)
        pruning = self.pruning and DriverPruning(self.pruning, self._model, resume_state)
        history = keras.callbacks.History()
        callback_list = keras.callbacks.CallbackList(
            [history, *(callbacks or [])], add_history=False, add_progbar=False,
            model=self._model, verbose=verbose, epochs=epochs, steps=None,
            batch_size=batch_size, mode=self.mode, frequency=self.frequency,
            num_workers=num_workers,
        )
        batch_hooks = _has_batch_hooks(callbacks)
        plan = TrainPlan(
            mode=self.mode, epochs=epochs, batch_size=batch_size, data=spec,
            backend=keras.backend.backend(), seed=self.config.seed,
            custom_objects=self.custom_objects, devices_per_task=self.config.devices_per_task,
            data_mode=self.config.data, shuffle_buffer=self.config.shuffle_buffer,
            steps_per_round=self._steps,
            progress_interval_s=(
                progress.REPORT_INTERVAL_S if verbose or batch_hooks else None
            ),
            pruning=pruning and pruning.plan,
        )
        run = FitRun(
            plan=plan, num_workers=num_workers,
            server=ServerSettings(
                **_server_hosts(spark, self.config.server_host,
                                self.config.server_advertised_host),
                port=self.config.server_port, tls=self.config.tls,
            ),
            max_attempts=options.check_positive_int("max_attempts", self.config.max_attempts),
            checkpoint_dir=checkpoint_dir, resume_state=resume_state, workers=self.workers,
            start_timeout_s=self.config.start_timeout_s,
            staleness=Staleness(damping=self.config.staleness_damping,
                                max_staleness=self.config.max_staleness),
            progress=(progress.FitProgress(verbose, epochs, session_access.spark_context(spark))
                      if verbose else None),
            batch_hooks=batch_hooks, pruning=pruning,
        )
        self.workers.clear()
        with run.progress or contextlib.nullcontext():
            self.training_summary = run_fit(self._model, frame, callback_list, history, run)
        return history

    def evaluate(self, df, features_col="features", label_col="label", batch_size=256,
                 *, decode=None):
        """Returns the model's loss and metrics on `df` as a dict.

        Each partition is evaluated on its executor; the driver averages the
        results weighted by sample counts, so the figures are global.
        `decode` is as in `fit`.
        """
        from sparkeras.inference import evaluate_frame

        _check_frame("df", df)
        options.check_positive_int("batch_size", batch_size)
        spec = self._data_spec(df, features_col, label_col, compiled=True, decode=decode)
        self._check_devices(df.sparkSession)
        return evaluate_frame(df, self._model, spec, batch_size, self.custom_objects,
                              self.config.devices_per_task)

    def predict(self, df, features_col="features", output_col="prediction", batch_size=1024,
                *, probability_col="probability", raw=False, decode=None):
        """Returns `df` with the model's predictions appended.

        Spark ML's convention: a classifier (one output of shape `(None, k)`,
        k >= 2) gets the predicted class index (double: 0.0, 1.0, ...) in
        `output_col` and its k outputs (`array<float>`, the class probabilities
        of a softmax model) in `probability_col`. Any other model (a
        regressor, a one-unit sigmoid, several outputs) writes its raw output
        to `output_col`; a model with several outputs gets one column per
        output, named `{output_col}_{output name}`. Every input column and row
        is kept, in order; nothing is collected to the driver.

        Args:
            df: DataFrame to score.
            features_col: As in `fit`.
            output_col: Column of the predicted class, or of the raw output.
            batch_size: Rows per `predict_on_batch` call on the executors.
            probability_col: Column of a classifier's k outputs; None or ""
                leaves it out.
            raw: True writes the raw outputs to `output_col` for classifiers
                too (no class column, no `probability_col`).
            decode: As in `fit`.

        Example:
        >>> sm.predict(test_df).select("label", "prediction", "probability").show()
        >>> sm.predict(test_df, raw=True).select("prediction").first()   # the 10 outputs
        """
        from sparkeras.data import prediction_fields
        from sparkeras.inference import is_classifier, predict_frame, with_predicted_class

        _check_frame("df", df)
        options.check_positive_int("batch_size", batch_size)
        spec = self._data_spec(df, features_col, None, compiled=False, decode=decode)
        _, output_shapes, _ = options.check_model(self._model, compiled=False)
        classes = not raw and is_classifier(output_shapes)
        scores_col = (probability_col or _SCORES_COLUMN) if classes else output_col
        names = list(getattr(self._model, "output_names", None) or [output_col])
        fields = prediction_fields(output_shapes, scores_col, names)
        added = [output_col] if classes else [f.name for f in fields]
        clashes = [name for name in added if name in df.columns]
        if clashes:
            raise ValueError(
                f"The DataFrame already has a column named {clashes[0]!r}. Pass another "
                f"output_col. Received: output_col={output_col!r}"
            )
        if classes and probability_col and probability_col in df.columns:
            raise ValueError(
                f"The DataFrame already has a column named {probability_col!r}. Pass another "
                f"probability_col, or None to leave it out. "
                f"Received: probability_col={probability_col!r}"
            )
        self._check_devices(df.sparkSession)
        scored = predict_frame(df, self._model, spec, fields, batch_size, self.custom_objects,
                               self.config.devices_per_task)
        if not classes:
            return scored
        return with_predicted_class(
            scored, scores_col, output_col, keep_scores=bool(probability_col)
        )

    def save(self, path):
        """Saves the driver's model in the `.keras` format."""
        self._model.save(path)

    @classmethod
    def load(cls, path, custom_objects=None, **kwargs):
        """Loads a `.keras` file into a new SparkModel.

        Example:
        >>> sm = SparkModel.load("m.keras", mode="synchronous")
        """
        from sparkeras.common.model_io import load_model_file

        model = load_model_file(path, custom_objects)
        return cls(model, custom_objects=custom_objects, **kwargs)

    def _check_devices(self, spark, batch_size=None):
        return options.check_devices(
            *session_access.conf_and_master(spark), self.config.devices_per_task, batch_size
        )

    def _data_spec(self, df, features_col, label_col, compiled, decode=None):
        from sparkeras.data import resolve_data_spec

        input_shapes, output_shapes, input_dtypes = options.check_model(self._model, compiled)
        return resolve_data_spec(
            df.schema, features_col, label_col, input_shapes, output_shapes, input_dtypes,
            decode=decode,
        )

    def export(self, path):
        """Writes the driver's model as a TensorFlow SavedModel for TF Serving.

        See `sparkeras.export.export_saved_model`.

        Example:
        >>> sm.export("/models/digits/1")
        >>> tf.saved_model.load("/models/digits/1").serve(x)
        """
        from sparkeras.export import export_saved_model

        return export_saved_model(self._model, path)


_ALL_INTERFACES = ("0.0.0.0", "::")
_SCORES_COLUMN = "__sparkeras_scores"  # a classifier's outputs when probability_col is None


def _server_hosts(spark, server_host, advertised_host=None):
    """Where the parameter server binds, and the address the executors connect to.

    As Spark's own driver services do: bind to `spark.driver.bindAddress` if
    set (containers with bridged networking), else `spark.driver.host`, and
    advertise `spark.driver.host`. `TrainingConfig.server_host` sets both,
    except that executors cannot connect to all interfaces ("0.0.0.0").
    `TrainingConfig.server_advertised_host` replaces the advertised address.
    """
    if session_access.is_connect(spark):  # the server runs in this client process
        hosts = session_access.client_server_hosts(spark, server_host)
    else:
        driver_host = spark.conf.get("spark.driver.host")
        bind = server_host or spark.conf.get("spark.driver.bindAddress", None) or driver_host
        advertised = driver_host if server_host in (None, "", *_ALL_INTERFACES) else server_host
        hosts = {"host": bind, "advertised_host": advertised}
    return {**hosts, "advertised_host": advertised_host or hosts["advertised_host"]}


def _has_batch_hooks(callbacks):
    """Whether a Keras callback implements `on_train_batch_end` (or `on_batch_end`)."""
    methods = [
        getattr(callback, name, None)
        for callback in callbacks or []
        for name in ("on_train_batch_end", "on_batch_end")
    ]
    return any(m is not None and not getattr(m, "_is_default", False) for m in methods)


def _resume_state(checkpoint_dir, resume, epochs):
    """The checkpoint to continue from, or None; checked before any job."""
    from sparkeras.checkpoint import load_checkpoint

    if not resume:
        return None
    if checkpoint_dir is None:
        raise ValueError(
            "resume=True needs the checkpoint_dir of the fit to continue. "
            "Received: checkpoint_dir=None"
        )
    state = load_checkpoint(checkpoint_dir)
    if state["epochs_done"] >= epochs:
        raise ValueError(
            f"The checkpoint in {checkpoint_dir!r} already has {state['epochs_done']} epochs; "
            f"pass a larger epochs to train more. Received: epochs={epochs}"
        )
    return state
