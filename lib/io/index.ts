/** Files: safetensors weights (PyTorch key names) and whole zoo models. */
export { saveSafetensors, loadSafetensors, SafetensorsFile } from './safetensors';
export { saveModel, loadModel, save, load } from './model';
