"""KFP component: deploy_triton."""
