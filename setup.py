"""Installs sparkeras: distributed Keras training on Spark DataFrames."""

from setuptools import find_packages, setup

setup(
    name="sparkeras",
    version="0.1.0",
    description="Train and serve Keras 3 models on Spark DataFrames.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sparkeras", "sparkeras.*"]),
    package_data={"sparkeras": ["resources/*.properties"]},
    install_requires=[
        "pyspark>=4.1,<5",
        "keras>=3.3,<4",
        "tensorflow-cpu>=2.16; platform_machine=='x86_64'",
        "tensorflow>=2.16; platform_machine!='x86_64'",
        "pyarrow>=15",
        "numpy>=1.24",
        "pandas>=2.0,<3",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "ruff>=0.5",
            "jax>=0.6",  # the JAX test run (.ci/run) and the multi-device tests
            "pyspark[connect]>=4.1,<5",  # the Spark Connect test run (.ci/run)
            # The optional integrations below, and the notebook test (nbclient runs it).
            "mlflow-skinny>=2.12",
            "tensorboard>=2.16",
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6",
            "ipywidgets>=8",
            "pillow>=9",  # tests/data/test_images_text.py and bench/images.py make PNGs
        ],
        "jax": ["jax>=0.6"],  # KERAS_BACKEND=jax (CPU; jax[cuda12] for NVIDIA GPUs)
        # Spark Connect sessions (get_spark(remote=...), --remote): gRPC and its protos.
        "connect": ["pyspark[connect]>=4.1,<5"],
        # sparkeras.callbacks.MLflowLogger; the skinny client is enough to log runs
        # (the full `mlflow` package, with its server, works as well).
        "mlflow": ["mlflow-skinny>=2.12"],
        # keras.callbacks.TensorBoard writes its summaries through this package.
        "tensorboard": ["tensorboard>=2.16"],
        # Jupyter (`jupyter lab notebooks/quickstart.ipynb`), ipywidgets for the fit's
        # progress widget, and the MLflow and TensorBoard clients the notebook uses.
        "notebook": [
            "jupyterlab>=4",
            "ipykernel>=6",
            "ipywidgets>=8",
            "mlflow-skinny>=2.12",
            "tensorboard>=2.16",
        ],
        # Decoding encoded images (PNG, JPEG) in a decode= function on the executors.
        "images": ["pillow>=9"],
    },
    entry_points={"console_scripts": ["sparkeras=sparkeras.cli:main"]},
)
