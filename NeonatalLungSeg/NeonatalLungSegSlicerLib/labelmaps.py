"""Segments <-> label arrays on the volume's grid, touching only the voxels that matter.

Why not ``slicer.util.arrayFromSegmentBinaryLabelmap`` / ``updateSegmentBinaryLabelmapFromArray``: each call
resamples or imports a whole volume (measured on slicer-core, 512 x 512 x 300: writing the two lungs 2.1 s,
reading them back 1.9 s), and the module did several per AI click on Slicer's main thread. Here:

- a segment's binary labelmap that lies on the volume's grid (the segmentation's reference geometry is the
  volume's, as Segment sets it) is read through a NumPy view of its own extent, never resampled;
- Segment's result becomes ONE shared labelmap cropped to the lungs' bounding box, with one label value per
  segment (Slicer's own shared-layer layout: ``vtkSegment.SetLabelValue`` on segments sharing one image);
- an AI click writes only the box it changed, with ``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``
  (max-merge to add, min-merge to remove, nothing listed to overwrite), so no other segment is ever touched.

A labelmap off the volume's grid (another geometry chosen in the Segment Editor, oversampling) falls back to
Slicer's resampling calls: slower, same result.
"""

import numpy as np
import vtk
from vtk.util.numpy_support import vtk_to_numpy

import slicer

GRID_TOLERANCE = 1e-4  # mm: matrices closer than this describe the same grid


def binaryName():
    return slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def ijkToRas(volumeNode):
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrix


def volumeShape(volumeNode):
    """(k, j, i) voxel counts of the volume."""
    i, j, k = volumeNode.GetImageData().GetDimensions()
    return (k, j, i)


def _onGrid(image, volumeNode):
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return np.allclose(slicer.util.arrayFromVTKMatrix(matrix), slicer.util.arrayFromVTKMatrix(ijkToRas(volumeNode)),
                       atol=GRID_TOLERANCE)


def boundingBox(mask):
    """((k0, k1), (j0, j1), (i0, i1)) half-open box of the nonzero voxels of ``mask``, or None when empty.

    Slices are found first (one pass over the volume, 64-bit words where the row length allows), the rows and
    columns only within them."""
    flat = np.ascontiguousarray(mask).reshape(mask.shape[0], -1)
    words = flat.view(np.uint64) if flat.dtype.itemsize == 1 and flat.shape[1] % 8 == 0 else flat
    slices = np.flatnonzero(words.any(axis=1))
    if slices.size == 0:
        return None
    k0, k1 = int(slices[0]), int(slices[-1]) + 1
    slab = mask[k0:k1]
    rows = np.flatnonzero(slab.any(axis=(0, 2)))
    columns = np.flatnonzero(slab.any(axis=(0, 1)))
    return (k0, k1), (int(rows[0]), int(rows[-1]) + 1), (int(columns[0]), int(columns[-1]) + 1)


def changedBox(before, after):
    """The box where two equally shaped uint8 arrays differ (None when equal), found without a whole-volume
    boolean array: slices are compared as 64-bit words."""
    a = np.ascontiguousarray(before).reshape(before.shape[0], -1)
    b = np.ascontiguousarray(after).reshape(after.shape[0], -1)
    if a.shape[1] % 8 == 0:
        a, b = a.view(np.uint64), b.view(np.uint64)
    slices = np.flatnonzero((a != b).any(axis=1))
    if slices.size == 0:
        return None
    k0, k1 = int(slices[0]), int(slices[-1]) + 1
    (a, b), rows, columns = boundingBox(before[k0:k1] != after[k0:k1])
    return (a + k0, b + k0), rows, columns


def boxSlices(box):
    return tuple(slice(lo, hi) for lo, hi in box)


def orientedImage(volumeNode, box, values):
    """A ``vtkOrientedImageData`` on the volume's grid covering ``box`` (half-open (k, j, i) ranges), filled with
    ``values`` (uint8, the box's shape); an empty image for ``box`` None."""
    image = slicer.vtkOrientedImageData()
    if box is None:
        image.SetExtent(0, -1, 0, -1, 0, -1)
    else:
        (k0, k1), (j0, j1), (i0, i1) = box
        image.SetExtent(i0, i1 - 1, j0, j1 - 1, k0, k1 - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.SetImageToWorldMatrix(ijkToRas(volumeNode))
    if box is not None:
        view = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(values.shape)
        view[...] = values
    return image


def _segmentView(segmentationNode, segmentId, volumeNode):
    """(array view, clipped box, label value) of a segment's labelmap on the volume grid; (None, None, None)
    for an empty segment; None when the labelmap is not on the volume's grid (use the slow path)."""
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    image = segment.GetRepresentation(binaryName()) if segment is not None else None
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        return (None, None, None) if image is not None else None
    if image.GetNumberOfScalarComponents() != 1 or not _onGrid(image, volumeNode):
        return None
    i0, i1, j0, j1, k0, k1 = image.GetExtent()
    if i1 < i0 or j1 < j0 or k1 < k0:
        return (None, None, None)
    view = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    shape = volumeShape(volumeNode)
    lo, hi = (k0, j0, i0), (k1 + 1, j1 + 1, i1 + 1)
    clipLo = [max(a, 0) for a in lo]
    clipHi = [min(b, n) for b, n in zip(hi, shape)]
    if any(b <= a for a, b in zip(clipLo, clipHi)):
        return (None, None, None)
    sub = view[tuple(slice(a - o, b - o) for a, b, o in zip(clipLo, clipHi, lo))]
    return sub, tuple(zip(clipLo, clipHi)), segment.GetLabelValue()


def segmentMaskInto(segmentationNode, segmentId, volumeNode, labels, value):
    """Set ``labels`` (the volume's shape) to ``value`` where the segment is; returns the number of those voxels
    that another value held already (overlap)."""
    found = _segmentView(segmentationNode, segmentId, volumeNode)
    if found is None:  # off the grid: Slicer resamples it
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode) != 0
        overlap = int(np.count_nonzero(mask & (labels != 0) & (labels != value)))
        labels[mask] = value
        return overlap
    sub, box, labelValue = found
    if sub is None:
        return 0
    mask = sub == labelValue
    target = labels[boxSlices(box)]
    overlap = int(np.count_nonzero(mask & (target != 0) & (target != value)))
    target[mask] = value
    return overlap


def readLabels(segmentationNode, volumeNode, names):
    """uint8 labels 1, 2, ... in ``names`` order on the volume's grid (ValueError naming the segment for a
    missing one, or the overlap when two of them share voxels). Work proportional to the segments' extents."""
    segmentation = segmentationNode.GetSegmentation()
    labels = np.zeros(volumeShape(volumeNode), dtype=np.uint8)
    ids = []
    for name in names:
        segmentId = segmentation.GetSegmentIdBySegmentName(name)
        if not segmentId:
            raise ValueError(f"segmentation '{segmentationNode.GetName()}' has no segment named '{name}'")
        ids.append(segmentId)
    done = _readSharedLayer(segmentationNode, ids, volumeNode, labels)
    for value, (name, segmentId) in enumerate(zip(names, ids), start=1):
        if segmentId in done:
            continue
        overlap = segmentMaskInto(segmentationNode, segmentId, volumeNode, labels, value)
        if overlap:
            raise ValueError(f"{overlap} voxels belong to both '{names[value - 2]}' and '{name}'. Remove the "
                             "overlap (e.g. paint with 'Overwrite other segments') and try again.")
    return labels


def _readSharedLayer(segmentationNode, ids, volumeNode, labels):
    """Segments of ``ids`` that share one uint8 labelmap layer on the volume's grid (Segment's result), read
    in one pass over the layer's extent (label value -> 1, 2, ... in ``ids`` order; segments of one layer
    cannot overlap). Returns the IDs read."""
    segmentation = segmentationNode.GetSegmentation()
    images = [segmentation.GetSegment(segmentId).GetRepresentation(binaryName()) for segmentId in ids]
    if len(ids) < 2 or images[0] is None or any(image is not images[0] for image in images):
        return set()
    image = images[0]
    if image.GetScalarType() != vtk.VTK_UNSIGNED_CHAR:
        return set()
    found = _segmentView(segmentationNode, ids[0], volumeNode)
    if found is None:
        return set()
    sub, box, _ = found
    if sub is not None:
        target = labels[boxSlices(box)]
        for value, segmentId in enumerate(ids, start=1):  # comparisons and ORs: faster than a table lookup
            mask = (sub == segmentation.GetSegment(segmentId).GetLabelValue()).view(np.uint8)
            if value == 1:
                target[...] = mask
            else:
                mask *= np.uint8(value)
                target |= mask
    return set(ids)


def writeLabels(segmentationNode, volumeNode, labels, segments, box=False):
    """Add one segment per ``(name, value, colour, terminology or None)`` sharing one labelmap cropped to the
    box of ``labels`` (uint8 on the volume's grid; ``box`` when it is known already); returns name -> ID."""
    box = boundingBox(labels) if box is False else box
    image = orientedImage(volumeNode, box, labels[boxSlices(box)] if box else None)
    segmentation = segmentationNode.GetSegmentation()
    ids = {}
    for name, value, color, terminology in segments:
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*color)
        if terminology:
            segment.SetTerminology(terminology)
        segment.AddRepresentation(binaryName(), image)
        segment.SetLabelValue(int(value))
        segmentation.AddSegment(segment)
        ids[name] = segmentation.GetSegmentIdBySegment(segment)
    return ids


def modifyBox(segmentationNode, segmentId, volumeNode, box, add, remove):
    """Within ``box`` only: add the voxels of ``add`` to the segment and take those of ``remove`` out of it
    (bool arrays of the box's shape). No other segment is changed (nothing is listed to overwrite; a segment
    sharing a layer is moved to its own layer by Slicer where needed)."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    (k0, k1), (j0, j1), (i0, i1) = box
    extent = (i0, i1 - 1, j0, j1 - 1, k0, k1 - 1)
    segmentation = segmentationNode.GetSegmentation()
    if add is not None and add.any():
        # Adding over another segment of the same shared layer: that segment keeps its voxels, so this one
        # moves to a layer of its own first (Slicer would move it during the write, changing its label value).
        layer = _layerValues(segmentationNode, segmentId, volumeNode, box)
        own = segmentation.GetSegment(segmentId).GetLabelValue()
        if layer is not None and np.any(add & (layer != 0) & (layer != own)):
            segmentation.SeparateSegmentLabelmap(segmentId)
    # The image carries the segment's own label value: in a shared layer (Segment's result) the merge writes
    # the image's values as they are, so a 1 would land in whichever segment has label value 1.
    value = np.uint8(segmentation.GetSegment(segmentId).GetLabelValue())
    if add is not None and add.any():
        image = orientedImage(volumeNode, box, add.astype(np.uint8) * value)
        if not logic.SetBinaryLabelmapToSegment(image, segmentationNode, segmentId, logic.MODE_MERGE_MAX, extent,
                                                False, []):
            raise RuntimeError("Slicer could not add the AI correction to the segment")
    if remove is not None and remove.any():
        image = orientedImage(volumeNode, box, (~remove).astype(np.uint8) * value)
        if not logic.SetBinaryLabelmapToSegment(image, segmentationNode, segmentId, logic.MODE_MERGE_MIN, extent,
                                                False, []):
            raise RuntimeError("Slicer could not remove the AI correction from the segment")


def _layerValues(segmentationNode, segmentId, volumeNode, box):
    """The values of the segment's labelmap layer inside ``box`` (0 outside its extent), or None when the layer
    is not on the volume's grid."""
    image = segmentationNode.GetSegmentation().GetSegment(segmentId).GetRepresentation(binaryName())
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        return None
    if not _onGrid(image, volumeNode):
        return None
    values = np.zeros(tuple(hi - lo for lo, hi in box), dtype=np.uint8)
    i0, i1, j0, j1, k0, k1 = image.GetExtent()
    if i1 < i0 or j1 < j0 or k1 < k0:
        return values
    view = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    lo = [max(a, b) for a, b in zip((box[0][0], box[1][0], box[2][0]), (k0, j0, i0))]
    hi = [min(a, b + 1) for a, b in zip((box[0][1], box[1][1], box[2][1]), (k1, j1, i1))]
    if all(b > a for a, b in zip(lo, hi)):
        values[tuple(slice(a - o[0], b - o[0]) for a, b, o in zip(lo, hi, box))] = \
            view[tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, (k0, j0, i0)))]
    return values


def storeCropped(scene, node, volumeNode, labels, offsetAttribute, box=False):
    """``labels`` cropped to its box (``box`` when known already) into the labelmap ``node`` (its IJK-to-RAS
    shifted to the box), the box's first voxel in ``offsetAttribute``; an all-zero array keeps one voxel."""
    box = (boundingBox(labels) if box is False else box) or ((0, 1), (0, 1), (0, 1))
    cropped = np.ascontiguousarray(labels[boxSlices(box)], dtype=np.uint8)
    slicer.util.updateVolumeFromArray(node, cropped)
    matrix = slicer.util.arrayFromVTKMatrix(ijkToRas(volumeNode))
    (k0, _), (j0, _), (i0, _) = box
    matrix[:3, 3] = (matrix @ np.array([i0, j0, k0, 1.0]))[:3]
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
    node.SetAttribute(offsetAttribute, f"{k0},{j0},{i0}")
    return node


def readCropped(node, volumeNode, offsetAttribute):
    """The full-grid array of a labelmap stored by ``storeCropped`` (or stored whole, without the attribute);
    None when it does not fit the volume."""
    array = slicer.util.arrayFromVolume(node)
    shape = volumeShape(volumeNode)
    offset = node.GetAttribute(offsetAttribute)
    if offset is None:
        return np.array(array, dtype=np.uint8, copy=True) if array.shape == shape else None
    k0, j0, i0 = (int(v) for v in offset.split(","))
    if min(k0, j0, i0) < 0 or any(o + n > s for o, n, s in zip((k0, j0, i0), array.shape, shape)):
        return None
    full = np.zeros(shape, dtype=np.uint8)
    full[k0:k0 + array.shape[0], j0:j0 + array.shape[1], i0:i0 + array.shape[2]] = array
    return full
