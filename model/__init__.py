"""The trainer: networks, streaming from a feature store, training, evaluation, prediction.

Public API::

    model.networks.build_model(name, *, n_classes, feature_bands, **knobs) -> GenreClassifier
    model.networks.model_names() -> tuple[str, ...]
    model.data.WindowStream(store_or_uri, *, split, features, batch_size=32, ...)   # IterableDataset
    model.data.iter_clip_windows(store, clips, features) / normalisation_stats(store, clips, features)
    model.train.train(store_or_uri, model_name_or_TrainConfig, out_dir, *, resume=False, **options) -> dict
    model.evaluate.evaluate(checkpoint, store_or_uri, out_dir=None, *, split="test", folds=None) -> dict
    model.predict.Predictor(checkpoint).predict(path) / predict_files(checkpoint, files, top=3)

Nothing here computes DSP features except through :mod:`pipeline.extract`
(prediction reuses the store's own functions and config). Its benchmarks
(loader, prediction latency, the GPU check) live in :mod:`bench`.
"""
