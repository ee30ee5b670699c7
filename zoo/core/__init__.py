"""The Vocoder contract: the mel convention, configs, file helpers, streaming and the base class.

Imports nothing from the other layers of ``zoo``."""
