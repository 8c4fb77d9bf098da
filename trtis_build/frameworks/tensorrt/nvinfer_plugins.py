"""The plugins TensorRT's own plugin library (libnvinfer_plugin) registers in namespace "":
Triton's TensorRT backend initializes that library in every server, so a plugin of ours with
one of these names in namespace "" collides with it there (TensorRT 11 refuses the whole
library; 10 keeps whichever registered first). Names and versions as TensorRT's plugin
directory lists them across the 8.6 to 10.x releases; the full library cannot be installed
on CI machines to ask it (see NOTES.md), so the list is kept here."""

from __future__ import annotations

# name -> the versions registered by some release in that range
NVINFER_PLUGINS: dict[str, tuple[str, ...]] = {
    "BatchTilePlugin_TRT": ("1",), "BatchedNMS_TRT": ("1",), "BatchedNMSDynamic_TRT": ("1",),
    "CustomQKVToContextPluginDynamic": ("1", "2", "3", "4", "5", "6"), "Clip_TRT": ("1",),
    "CoordConvAC": ("1",), "CropAndResize": ("1",), "CropAndResizeDynamic": ("1", "2"),
    "DecodeBbox3DPlugin": ("1",), "DetectionLayer_TRT": ("1",), "DisentangledAttention_TRT": ("1", "2"),
    "EfficientNMS_TRT": ("1",), "EfficientNMS_ONNX_TRT": ("1",),
    "CustomEmbLayerNormPluginDynamic": ("1", "2", "3", "4", "5", "6"), "CustomFCPluginDynamic": ("1",),
    "FlattenConcat_TRT": ("1",), "CustomGeluPluginDynamic": ("1",), "GenerateDetection_TRT": ("1",),
    "GridAnchor_TRT": ("1",), "GridAnchorRect_TRT": ("1",), "GroupNormalizationPlugin": ("1",),
    "InstanceNormalization_TRT": ("1", "2", "3"), "LReLU_TRT": ("1",), "ModulatedDeformConv2d": ("1", "2"),
    "MultilevelCropAndResize_TRT": ("1",), "MultilevelProposeROI_TRT": ("1",),
    "MultiscaleDeformableAttnPlugin_TRT": ("1", "2"), "NMS_TRT": ("1",), "NMSDynamic_TRT": ("1",),
    "Normalize_TRT": ("1",), "RPROI_TRT": ("1",), "PillarScatterPlugin": ("1",), "PriorBox_TRT": ("1",),
    "ProposalLayer_TRT": ("1",), "Proposal": ("1",), "ProposalDynamic": ("1",), "PyramidROIAlign_TRT": ("1",),
    "Region_TRT": ("1",), "Reorg_TRT": ("1", "2"), "ROIAlign_TRT": ("1", "2"), "ResizeNearest_TRT": ("1",),
    "ScatterElements": ("1", "2"), "ScatterND": ("1",), "CustomSkipLayerNormPluginDynamic": ("1", "2", "3", "4", "5", "6", "7", "8"),
    "SpecialSlice_TRT": ("1",), "Split": ("1",), "VoxelGeneratorPlugin": ("1",),
}


def collides(name: str, namespace: str) -> bool:
    """Same name in namespace "": refused whatever the version, as the next release may add it
    and a lookup by name alone (ONNX parser, Triton) finds TensorRT's own first."""
    return namespace == "" and name in NVINFER_PLUGINS
