"""Import and export of configs users already have: kohya_ss GUI JSON, sd-scripts
``--config_file`` TOML and ``accelerate launch … sdxl_train_network.py …`` lines.

Pure apart from reading the given file: ``read`` (detect + parse) → sd-scripts arguments
(``gui``/``launchline``/``sdtoml``) → ``mapping`` (lorakit config dict + a row per key) →
``shorten`` (``extends:`` the closest preset). ``export`` goes the other way. The CLI
(``lorakit import`` / ``lorakit export``, cli/convert.py) only prints and writes."""
