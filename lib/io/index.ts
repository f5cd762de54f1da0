/** Files: safetensors weights (PyTorch key names), whole zoo models, and state dicts saved by Python's torch.save. */
export { saveSafetensors, loadSafetensors, SafetensorsFile } from './safetensors';
export { saveModel, loadModel, save, load } from './model';
export { loadTorchStateDict, TorchStateDictOptions } from './torchsave';
