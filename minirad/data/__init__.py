"""Data for minirad: image/DICOM readers and the dataset formats of the field.

readers.py    read_image (PNG/JPEG/TIFF/DICOM -> float32 grey in [0, 1]), ImageReadError
datasets.py   Record, folder-per-class, R2Gen annotation.json, IU X-Ray CSV pair
"""
