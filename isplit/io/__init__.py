"""Files in and out: whole-file-or-nothing writes, Parquet tables with their metadata, and
verified downloads. Torch-free, so every stage (light ones included) can use it."""
