// The engine's public API speaks in NN's types (Tensor, Weights, TensorSource): users of Diffusion
// get them without a second import.
@_exported import NN
