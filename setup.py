"""espnet_speechlm_plugin: speech encoder -> adapter -> LLM recipes for ESPnet.

``install_requires`` gives compatible ranges, so the plugin installs into an environment that already has ESPnet
(``pip install -e .``). The exact set we test, every transitive package included, is ``constraints.txt``;
``make install`` installs with it. Bounds: espnet 202506 pins numpy<1.24 (no wheels for Python 3.12) and
setuptools<74 (torch 2.13 and newer need a newer setuptools); the upper bounds of the others are the next major
release we have not tested.
"""
from setuptools import find_packages, setup

install_requires = [
    "espnet>=202506",
    "espnet_model_zoo>=0.1.7",
    "torch>=2.4,<2.13",
    "torchaudio>=2.4,<2.13",
    "transformers>=4.57,<5",
    "numpy>=1.21,<1.24",
    "soxr>=0.3",  # transformers imports it whenever librosa is present
    "sentencepiece>=0.2.0,<0.3",
    "kaldiio>=2.18",
    "jiwer>=4.0,<5",
    "sacrebleu>=2.4,<3",
    "bert-score>=0.3.13,<0.4",
    "whisper-normalizer==0.1.15",  # scoring/normalizer.py checks this release's tables against 0.0.10
    "unbabel-comet>=2.2.4,<3",
    "matplotlib<3.9",  # ESPnet's loss plots; newer matplotlib pulls numpy 2
    "espeakng-loader>=0.2.4,<0.3",  # libespeak-ng + data for the synthesised demo corpus
    "lingua-language-detector>=2.1,<3",  # language identification in scoring and pseudo-labelling (offline)
]

setup(
    name="espnet_speechlm_plugin",
    version="0.1.0",
    description="Speech-LLM (w2v-BERT -> adapter -> causal LM) recipes and task for ESPnet",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["espnet_speechlm_plugin", "espnet_speechlm_plugin.*"]),
    package_data={"espnet_speechlm_plugin": ["arch/*.json", "arch/*/config.json", "arch/README.md"]},
    install_requires=install_requires,
    extras_require={
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3"],
        "dev": ["pytest>=8,<10", "pytest-timeout>=2.3", "ruff"],
    },
)
