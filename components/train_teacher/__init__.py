"""KFP component: train_teacher."""
