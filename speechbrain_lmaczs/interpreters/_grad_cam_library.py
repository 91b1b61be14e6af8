"""pytorch-grad-cam's GradCAM++ adapted to the shared normalization (imported only when GradCAM++ is used).

Two changes to the library's behaviour, both in overrides of its documented extension points:
- ``compute_cam_per_layer``/``aggregate_multi_layers`` return the signed map on the layer grid, so that ReLU,
  upsampling and normalization are the ones every other baseline gets (the library would ReLU, min-max normalise
  and resize with OpenCV);
- ``__exit__`` releases the hooks and lets every exception through (the library swallows IndexError).
"""

from pytorch_grad_cam import GradCAMPlusPlus as LibraryGradCAMPlusPlus

from speechbrain_lmaczs.interpreters.hooks import single_map


class LayerGridGradCAMPlusPlus(LibraryGradCAMPlusPlus):
    """GradCAM++ for one target layer; ``__call__`` returns the signed (batch, t, f) numpy map."""

    def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
        activations = single_map(self.activations_and_grads.activations)
        gradients = single_map(self.activations_and_grads.gradients, "gradient of the CAM layer output")
        # float(): under bf16 autocast the hooked tensors are bfloat16, which numpy cannot hold.
        return self.get_cam_image(
            input_tensor,
            self.target_layers[0],
            targets,
            activations.float().numpy(),
            gradients.float().numpy(),
            eigen_smooth,
        )

    def aggregate_multi_layers(self, cam_per_target_layer):
        return cam_per_target_layer

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.activations_and_grads.release()
        return False
