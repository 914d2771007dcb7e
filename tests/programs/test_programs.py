"""Whole programs, each run on torch and on firefly with only the imports changed (issue 21).
Deterministic runs start from torch's weights, run in float64 on the same batches, and must
give the same loss series to 1e-9."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from twins import assert_series_close, firefly_source, run_twins  # noqa: E402


def test_only_import_lines_are_rewritten():
    source = (
        "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\n"
        "from torch import optim\nx = torch.zeros(2)  # torch stays torch here\n"
    )
    assert firefly_source(source) == (
        "import firefly as torch\nimport firefly.nn as nn\n"
        "from firefly.utils.data import DataLoader\nfrom firefly import optim\n"
        "x = torch.zeros(2)  # torch stays torch here\n"
    )


def test_mnist_cnn():
    ours, theirs = run_twins("mnist_cnn")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    assert_series_close([t[0] for t in ours["tests"]], [t[0] for t in theirs["tests"]], 1e-9)
    assert [t[1] for t in ours["tests"]] == [t[1] for t in theirs["tests"]]
    assert ours["losses"][-1] < 0.6 * ours["losses"][0]  # it learned


def test_training_utilities():
    ours, theirs = run_twins("training_utils")
    for key in ("losses", "val_losses", "norms", "lrs", "best", "restored"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert ours["epoch"] == theirs["epoch"]
    assert ours["best"][0] < ours["losses"][0]  # it learned


def test_fine_tuning_with_containers():
    ours, theirs = run_twins("finetune_containers")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    assert_series_close(ours["log_vars"], theirs["log_vars"], rtol=1e-9, what="log_vars")
    for key in ("missing", "unexpected", "trainable", "frozen_kept", "children"):
        assert ours[key] == theirs[key], key
    assert abs(ours["accuracy"] - theirs["accuracy"]) < 1e-12
    assert ours["frozen_kept"] and ours["unexpected"] == ["classifier.weight"]


def test_gan_step():
    ours, theirs = run_twins("gan_step")
    for key in ("losses", "errs_G", "D_x", "sample_mean"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)


def test_vae():
    ours, theirs = run_twins("vae")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    assert_series_close(ours["test_losses"], theirs["test_losses"], rtol=1e-9, what="test")
    assert ours["losses"][-1] < ours["losses"][0]  # it learned


def test_conv1d_time_series_classifier():
    ours, theirs = run_twins("conv1d_timeseries")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    assert_series_close(ours["val_losses"], theirs["val_losses"], rtol=1e-9, what="val_losses")
    assert ours["val_accs"] == theirs["val_accs"]
    assert ours["val_accs"][-1] > 0.6  # it learned (3 classes)


def test_knowledge_distillation():
    ours, theirs = run_twins("distillation")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    for key in ("teacher_accuracy", "student_accuracy", "student_params"):
        assert ours[key] == theirs[key], key
    assert ours["teacher_accuracy"] > 50  # it learned (10 classes)


def test_shuffled_pipeline_reaches_torch_level():
    """Random splits, shuffling and dropout: the final levels are compared."""
    ours, theirs = run_twins("shuffled_pipeline")
    assert ours["sizes"] == theirs["sizes"] == (1438, 359)
    assert ours["final_accuracy"] > 0.9 and theirs["final_accuracy"] > 0.9
    assert abs(ours["final_accuracy"] - theirs["final_accuracy"]) < 0.05
    assert abs(ours["final_loss"] - theirs["final_loss"]) < 0.15


def test_polynomial_fit():
    ours, theirs = run_twins("polynomial_fit")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    for key in ("coefficients", "bias", "weight_sum"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert ours["losses"][-1] < 0.1 * ours["losses"][300]  # the nn fit learned


def test_logistic_regression():
    ours, theirs = run_twins("logistic_regression")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    assert ours["accuracy"] == theirs["accuracy"] and ours["accuracy"] > 0.9


def test_nanogpt_with_causal_mask_topk_and_multinomial_sampling():
    ours, theirs = run_twins("nanogpt")
    assert_series_close(ours["losses"], theirs["losses"], rtol=1e-9)
    assert ours["greedy"] == theirs["greedy"]  # top_k=1: multinomial has one category left
    assert ours["sampled_valid"] and ours["tied"] and theirs["tied"]
    assert ours["losses"][-1] < 0.9 * ours["losses"][0]  # it learned


def test_dcgan_with_transposed_convolutions():
    ours, theirs = run_twins("dcgan_conv")
    for key in ("losses", "errs_G", "D_x", "sample_stats"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert ours["framed_shape"] == theirs["framed_shape"] == [4, 1, 36, 36]


def test_lbfgs_full_batch_fit():
    ours, theirs = run_twins("lbfgs_fit")
    for key in ("losses", "final"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert (ours["n_iter"], ours["func_evals"]) == (theirs["n_iter"], theirs["func_evals"])
    assert ours["final"][0] < 0.1 * ours["losses"][0]  # it fitted


def test_word_language_model_lstm_with_bptt_and_annealing():
    ours, theirs = run_twins("word_language_model")
    for key in ("losses", "val_losses", "lrs"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert abs(ours["perplexity"] - theirs["perplexity"]) < 1e-9 * theirs["perplexity"]
    assert ours["tied"] and theirs["tied"]
    assert ours["lrs"][-1] < ours["lrs"][0]  # the annealing branch ran
    assert min(ours["val_losses"]) < ours["val_losses"][0]  # it learned


def test_transformer_encoder_classifier_with_padding_mask():
    ours, theirs = run_twins("transformer_classifier")
    for key in ("losses", "test_losses"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert ours["accuracies"] == theirs["accuracies"]
    assert ours["accuracies"][-1] > 0.75  # it learned (2 classes)


def test_custom_autograd_functions():
    ours, theirs = run_twins("custom_autograd")
    for key in ("losses", "poly_losses", "frozen_grad"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    # a and c stay at 0 up to rounding (sin is odd): compared absolutely, b and d relatively
    (a, b, c, d), (at, bt, ct, dt) = ours["coefficients"], theirs["coefficients"]
    assert abs(a - at) < 1e-12 and abs(c - ct) < 1e-12
    assert_series_close([b, d], [bt, dt], rtol=1e-9, what="coefficients b, d")
    assert ours["w_grad_is_none"] and theirs["w_grad_is_none"]
    assert ours["losses"][-1] < 0.05 * ours["losses"][0]  # it learned


def test_pinn_hessian_vector_product_and_gradient_penalty():
    ours, theirs = run_twins("pinn_higher_order")
    for key in ("losses", "hvp", "penalty", "u"):
        assert_series_close(ours[key], theirs[key], rtol=1e-9, what=key)
    assert ours["losses"][-1] < 1e-3 * ours["losses"][0]  # it solved the equation
