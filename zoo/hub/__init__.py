"""Getting weights: card sources and the cache, lock files, safe unpickling of legacy checkpoints and
the converters' weight-norm helpers."""
