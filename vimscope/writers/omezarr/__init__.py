"""The main output: an OME-NGFF 0.4 store (Zarr v2 format) that QuPath, Fiji, napari and ome-zarr-py open.

Layout of ``<stem>.ome.zarr`` (``image=True``)::

    /            the image copy at the output resolution, (c, y, x) uint8, levels 0..L-1
    labels/classes   (y, x) uint8 class map with image-label colours and class names, L levels
    labels/nuclei    (y, x) uint32 instance ids (when the model gives instances), L levels
    probabilities/   (k, y, x) uint8 class probabilities (0-255), L levels, same grid as the image
    features/        (d, y, x) float16 token grid of stride ``feature_stride``, its own scale and levels

With ``image=False`` (``--no-image-copy``) the root is a plain group and ``classes/``, ``nuclei/``, ... are
standalone multiscale images for users who overlay them on the original slide.

Every array is Blosc-coded (``codecs``), so a plain zarr + numcodecs install reads the whole store; a JPEG image
copy is an explicit choice that other readers fail on. Modules: ``writer`` (``OmeZarrWriter``, a run's store,
streamed), ``labels`` (``write_labels``, one label map on its own, as napari saves a labels layer), ``layout``
(families, levels, codecs and attributes of a store), ``ngff`` (the metadata), ``codecs``.
"""

from __future__ import annotations

from vimscope.writers.omezarr.codecs import IMAGE_CODECS, JPEG_READERS_HELP
from vimscope.writers.omezarr.labels import label_dtype, write_labels
from vimscope.writers.omezarr.writer import OmeZarrWriter

__all__ = ["IMAGE_CODECS", "JPEG_READERS_HELP", "OmeZarrWriter", "label_dtype", "write_labels"]
