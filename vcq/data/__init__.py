"""Images, the synthetic data set, encoding views and the HDF5 token store."""

from vcq.data.images import ImageFolderDataset, eval_transform, to_tensor_pm1, to_uint8_nhwc
from vcq.data.tokens import TokenStore, TokenWriter, merge_shards, open_tokens
from vcq.data.views import make_views, view_names

__all__ = [
    "ImageFolderDataset", "TokenStore", "TokenWriter", "eval_transform", "make_views",
    "merge_shards", "open_tokens", "to_tensor_pm1", "to_uint8_nhwc", "view_names",
]
