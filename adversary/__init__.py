"""adversary: find the conversational distractors that make scoped chatbots abandon their instructions.

Subpackages:
    adversary.core        pure statistics, placement and metrics (no I/O)
    adversary.corpus      corpus format and importers
    adversary.models      litellm access, the embedded local server, embedders
    adversary.judges      judges that decide whether a reply stayed in scope
    adversary.store       the SQLite campaign store
    adversary.strategies  mutation operators (folder strategies/)
    adversary.reports     report rendering (folder reports/)
    adversary.corpora     the starter corpus data (folder corpora/)
"""

import os as _os

# Everything must work offline: litellm would otherwise fetch its price map from the internet at
# import, and Hugging Face libraries would try to reach the hub.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
