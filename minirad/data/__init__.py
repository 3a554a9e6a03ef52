"""Data for minirad: image/DICOM readers and the dataset formats of the field.

readers.py    read_image (PNG/JPEG/TIFF/DICOM -> float32 grey in [0, 1]), ImageReadError
gate.py       read_radiograph: the report pipeline's input gate (a CT, a lateral view, a blank or
              colour image is refused in one line, InputRefusedError; force=True for the header's)
datasets.py   Record, folder-per-class, R2Gen annotation.json, IU X-Ray CSV pair
"""
