"""Real-dataset sources: the six datasets of the paper, each read from its official on-disk layout.

One module per dataset (cub, celeba, textcaps, coco, cocoqa, refcocog); what they share (records
built from a scan, the caption filter, the small file readers) is in real.py. Layouts, and where
each root must point, are documented in docs/real_datasets.md.

The registry (lgvq/data/registry.py) names each source by its registry name as a "module:Class"
import path in its `BUILTIN` table and imports a source the first time its name is asked for; the
modules here import only the base classes (lgvq/data/base.py), never the registry. A new layout
is a module here plus a line in that table.
"""
