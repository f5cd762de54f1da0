/** `kiln.robust`: attacks (FGSM, PGD, the AutoAttack family, Carlini–Wagner L2, DeepFool), robust training objectives, common corruptions, randomized smoothing and robustness reports. */
export { fgsm, pgd, attackLoss, AttackOptions, AttackSpec } from './attacks';
export { adversarialTraining, trades, inputGradientPenalty, gaussianAugmentation, AdversarialTrainingOptions, TradesOptions, InputGradientPenaltyOptions, GaussianAugmentationOptions } from './objectives';
export { corrupt, CORRUPTIONS, CorruptionName, CorruptionFamily, CorruptOptions, corruptionFamilies } from './corruptions';
export { robustnessReport, formatRobustnessReport, RobustnessReport, RobustnessReportOptions, AttackResult, CorruptionResult, SmoothingReportOptions, SmoothingResult } from './report';
export { Normalization, Domain } from './domain';
export { plotRobustness, robustnessPlotSvg, RobustnessPlotOptions } from './plot';
export { apgd, dlrLoss, dlrTargetedLoss, ApgdOptions, ApgdLoss } from './apgd';
export { squareAttack, SquareOptions } from './square';
export { fab, FabOptions } from './fab';
export { cw, CwOptions } from './cw';
export { deepFool, DeepFoolOptions } from './deepfool';
export { autoAttack, AutoAttackOptions, AutoAttackResult, AutoAttackName, AUTOATTACK_ATTACKS, EvalAttackSpec, REPORT_ATTACKS } from './autoattack';
export { smoothPredict, certify, certifiedAccuracy, SmoothingOptions, CertifyOptions, SmoothPrediction, Certificate } from './smoothing';
export { betaInc, betaQuantile, normalQuantile, clopperPearsonLower, binomialTestHalf } from './statistics';
