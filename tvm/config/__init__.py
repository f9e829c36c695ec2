"""Settings and the language catalog."""

from tvm.config.catalog import Catalog, Language, load_catalog
from tvm.config.settings import Settings, get_settings

__all__ = ["Catalog", "Language", "Settings", "get_settings", "load_catalog"]
