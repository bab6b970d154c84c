"""runtime: what is applied to a loaded model from outside it: the precision it runs at (decided
once, `runtime.precision.decide`), int8 weights, torch.compile and the ONNX export. The model
package `xlmr` knows nothing of this one."""
