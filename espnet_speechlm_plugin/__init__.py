"""Speech-LLM recipes for ESPnet: w2v-BERT encoder -> compressor -> length adapter -> projector -> causal LM."""

__version__ = "0.1.0"
