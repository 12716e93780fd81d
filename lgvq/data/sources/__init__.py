"""Dataset sources: the embedded dataset (shapes.py) and the six real datasets of the paper, each
read from its official on-disk layout.

One module per layout (shapes, cub, celeba, textcaps, coco, cocoqa, refcocog); what the real ones
share (records built from a scan, the caption filter, the small file readers) is in real.py.
Layouts, and where each root must point, are documented in docs/real_datasets.md.

The registry (lgvq/data/registry.py, `DATASETS`) names each source by its registry name as a
"module:Class" import path and imports a source the first time its name is asked for; the modules
here import only the base classes (lgvq/data/base.py) and the file readers (formats.py), never the
registry. A new layout is a module here plus a line in `DATASETS`.
"""
