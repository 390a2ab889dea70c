"""Dataset sources: where each dataset comes from, how it is verified, how it is prepared.

The workflow calls three functions per dataset (:mod:`isplit.data.sources`), each with that
dataset's config slice ``cfg``:

* :func:`download_filename` — the file name under ``resources/downloads/<dataset>/`` (None for
  ``imagefolder``, which reads a local folder);
* :func:`download` — fetch that file (resumable, checksummed: :mod:`isplit.io.fetch`);
* :func:`prepare` — turn the archive into a *prepared dataset* directory.

A prepared dataset (``resources/datasets/<dataset>/``) is self-contained:

* ``manifest.parquet`` — one row per usable image, columns ``sample_id`` (string, unique),
  ``path`` (string relative to the dataset dir, null for array datasets), ``index`` (int64 row in
  ``images.npy`` or -1), ``label`` (int64, 0..K-1), ``class_name`` (string), ``split``
  ("train" | "val" | "test"); rows sorted by split (train, val, test) then ``sample_id``;
* ``classes.json`` — list of class names, position = label;
* ``images/`` (file sources, the original encoded bytes, never re-encoded) or ``images.npy``
  (array sources, uint8 N×H×W);
* ``prepare_report.json`` — counts per split and class, skipped files with reasons, how the
  split was made, image modes and sizes.

It is built in a hidden sibling directory and renamed into place at the very end, so a failed
preparation leaves no half-written dataset for Snakemake to trust.

Splits.  Each source keeps whatever official split is *labelled*; the rest is a deterministic
stratified split (:mod:`isplit.data.splits`, config ``split: {val, test, seed}``):

* ``animal-mnist``, ``notmnist``, flat ``imagefolder``: no official split -> stratified
  train/val/test;
* ``tiny-imagenet-200``: the official test set is unlabelled, so our test = the official val
  (labels from ``val_annotations.txt``) and our val = a stratified ``split.val`` of train;
* ``chest-xray-pneumonia``: official train/test; the official val has only 16 images (none at
  all in the Mendeley zip), so by default (``val_from_train: 0.1``) it is merged into train and
  a stratified 10% of that becomes val; ``val_from_train: 0`` keeps the official val;
* ``imagefolder`` with ``train/ val/ test/`` sub-folders: those are the splits (a missing val is
  carved from train with ``split.val``).

The three functions live in :mod:`isplit.data.sources`, which imports only the standard library
and :mod:`isplit.config` at module level because the Snakefile imports it at parse time.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset cannot be prepared (bad config, corrupt archive, unexpected layout).

    A ValueError because it is bad input, not a bug: the CLI reports those as one line.
    """
