"""hf_unified_pretrain: visual pre-training methods as Hugging Face transformers models.

Importing the package registers every model type with the transformers Auto classes.
"""

from .models.auto import register_all

__version__ = "0.1.0.dev0"

register_all()
