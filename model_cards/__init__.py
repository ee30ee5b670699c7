"""Model cards shipped with vocoder-zoo (data only; registered by ``zoo._builtin_cards``)."""
