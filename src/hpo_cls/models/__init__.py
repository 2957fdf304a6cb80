"""Model zoo: ResNet-family and Wide-ResNet classifiers with optional SE/CBAM attention.

``names`` (torch-free: what a spec may choose) · ``registry`` (``@register_model``) · ``resnet``, ``wrn``
(the backbones) · ``attention`` (SE, CBAM) · ``head`` · ``classifier`` (``build_model(cfg, num_classes)``) ·
``cost`` (FLOPs on the meta device, inference latency).
Kept import-free so the spec checker reads the names without importing torch.
"""
