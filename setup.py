"""espnet_speechlm_plugin: speech encoder -> adapter -> LLM recipes for ESPnet.

The install pins the stack that was verified to resolve together (pip check clean); see README "Install".
"""
from setuptools import find_packages, setup

install_requires = [
    "espnet==202506",
    "espnet_model_zoo==0.1.7",
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "transformers==4.57.6",
    "numpy==1.23.5",
    "soxr==1.1.0",  # transformers imports it whenever librosa is present
    "sentencepiece==0.2.0",
    "kaldiio==2.18.1",
    "jiwer==4.0.0",
    "sacrebleu==2.6.0",
    "bert-score==0.3.13",
    "whisper-normalizer==0.1.15",
    "unbabel-comet==2.2.7",
    "matplotlib<3.9",  # ESPnet's loss plots; plain matplotlib would pull numpy 2
    "espeakng-loader==0.2.4",  # libespeak-ng + data for the synthesised demo corpus
]

setup(
    name="espnet_speechlm_plugin",
    version="0.1.0",
    description="Speech-LLM (w2v-BERT -> adapter -> causal LM) recipes and task for ESPnet",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["espnet_speechlm_plugin", "espnet_speechlm_plugin.*"]),
    package_data={"espnet_speechlm_plugin": ["arch/*.json", "arch/*/config.json", "arch/README.md"]},
    install_requires=install_requires,
    extras_require={
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3"],
        "dev": ["pytest>=8,<10", "pytest-timeout>=2.3", "ruff"],
    },
)
