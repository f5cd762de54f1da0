/** `kiln.optim`: optimizers and learning-rate schedules. */
export { Optimizer, OptimizerState, ParamGroup, Params, SGD, SGDOptions, Adam, AdamW, AdamOptions, RMSprop, RMSpropOptions } from './optimizer';
