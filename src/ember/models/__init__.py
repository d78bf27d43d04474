"""Models: `Sequential`, `Model` for subclassing, saving and loading, named builders."""
from ember.models.model import Model
from ember.models.sequential import Sequential
from ember.models.saving import load_model, model_from_config
from ember.models.registry import create_model, list_models, register_model
from ember.models.pretrained import from_pretrained
from ember.models import cnn, generative, recommenders, text, translation  # noqa: F401  (register the named builders)

__all__ = ["Model", "Sequential", "load_model", "model_from_config", "create_model", "list_models",
           "register_model", "from_pretrained"]
