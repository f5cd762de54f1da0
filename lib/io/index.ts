/** Files: safetensors weights (PyTorch key names), whole zoo models, and state dicts saved by Python's torch.save. */
export { saveSafetensors, loadSafetensors, loadSafetensorsAsync, SafetensorsFile } from './safetensors';
export { saveModel, loadModel, loadModelAsync, save, load } from './model';
export { loadTorchStateDict, loadTorchStateDictAsync, TorchStateDictOptions } from './torchsave';
