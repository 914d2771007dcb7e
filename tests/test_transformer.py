"""The Transformer layers (TransformerEncoderLayer/DecoderLayer, TransformerEncoder/Decoder,
Transformer) against torch's in float64 with torch's state_dict loaded: outputs and the
gradients of the inputs and of every parameter, over norm_first, the activations, batch_first
and the masks; then what holds without torch (causality, padding, batch_first, dropout,
gradients against central differences) and bad input."""

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn
from firefly.nn import functional as F
from firefly.testing import gradcheck

try:
    import torch
except ImportError:  # the oracle tests skip; the rest run
    torch = None
needs_torch = pytest.mark.skipif(
    torch is None, reason="needs torch as the oracle: pip install torch==2.13.0"
)

D_MODEL, NHEAD, FF = 8, 2, 16
TOL = 1e-9


def layer_kwargs(**overrides):
    return {"dim_feedforward": FF, "dropout": 0.0, "layer_norm_eps": 1e-5, **overrides}


def activations(name):
    """(firefly's, torch's) activation argument for ``name``: a string or a callable."""
    if name == "callable":
        return firefly.tanh, torch.tanh
    return name, name


def twins(build, dtype=np.float64):
    """``build(nn_module)`` in torch (its own initialization) and in firefly with torch's
    state_dict loaded."""
    torch.manual_seed(0)
    theirs = build(torch.nn).to(torch.float64)
    ours = build(nn).to(dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def sequence(rng, length, batch, batch_first):
    shape = (batch, length, D_MODEL) if batch_first else (length, batch, D_MODEL)
    return rng.normal(size=shape) if batch else rng.normal(size=(length, D_MODEL))


def as_torch(value):
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def as_firefly(value):
    if isinstance(value, np.ndarray):
        return Tensor(value, dtype=value.dtype)
    return value


def check_against_torch(ours, theirs, inputs, masks, rng):
    """Run both on ``inputs`` (arrays, given gradients) and ``masks`` (keyword arrays), then
    compare the outputs, the inputs' gradients and every parameter's gradient."""
    our_inputs = [Tensor(a, requires_grad=True) for a in inputs]
    their_inputs = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = ours(*our_inputs, **{k: as_firefly(v) for k, v in masks.items()})
    their_out = theirs(*their_inputs, **{k: as_torch(v) for k, v in masks.items()})
    np.testing.assert_allclose(out.numpy(), their_out.detach().numpy(), rtol=TOL, atol=TOL)
    cotangent = rng.normal(size=out.shape)
    out.backward(Tensor(cotangent))
    their_out.backward(torch.from_numpy(cotangent))
    for mine, reference in zip(our_inputs, their_inputs):
        np.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=TOL, atol=TOL)
    their_params = dict(theirs.named_parameters())
    our_params = dict(ours.named_parameters())
    assert list(our_params) == list(their_params)
    for name, param in their_params.items():
        np.testing.assert_allclose(
            our_params[name].grad.numpy(),
            param.grad.numpy(),
            rtol=TOL,
            atol=TOL,
            err_msg=name,
        )


def causal(length):
    return np.triu(np.full((length, length), -np.inf), 1)


def padding(batch, length, rng, as_float=False):
    """A key padding mask with at least one real key per row: bool (True: ignored), or the
    float form (-inf: ignored) to go with a float attention mask."""
    mask = rng.random((batch, length)) < 0.3
    mask[:, 0] = False
    return np.where(mask, -np.inf, 0.0) if as_float else mask


# ----------------------------------------------------------------------------- against torch
ENCODER_MASKS = ["none", "causal", "bool-attn-and-padding", "float-attn-and-padding"]


def encoder_masks(kind, length, batch, rng):
    if kind == "none":
        return {}
    if kind == "causal":
        return {"src_mask": causal(length), "is_causal": True}
    if kind == "bool-attn-and-padding":
        attn = rng.random((length, length)) < 0.3
        np.fill_diagonal(attn, False)  # every query keeps a key
        return {"src_mask": attn, "src_key_padding_mask": padding(batch, length, rng)}
    return {
        "src_mask": rng.normal(size=(length, length)),
        "src_key_padding_mask": padding(batch, length, rng, as_float=True),
    }


@needs_torch
@pytest.mark.parametrize("masks", ENCODER_MASKS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", "callable"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first, masks):
    rng = np.random.default_rng(0)
    length, batch = 5, 3
    ours, theirs = twins(
        lambda lib: lib.TransformerEncoderLayer(
            D_MODEL,
            NHEAD,
            **layer_kwargs(
                batch_first=batch_first,
                norm_first=norm_first,
                activation=activations(activation)[lib is torch.nn],
            ),
        )
    )
    src = sequence(rng, length, batch, batch_first)
    check_against_torch(ours, theirs, [src], encoder_masks(masks, length, batch, rng), rng)


DECODER_MASKS = ["none", "causal", "all"]


def decoder_masks(kind, tgt_len, src_len, batch, rng):
    if kind == "none":
        return {}
    masks = {"tgt_mask": causal(tgt_len), "tgt_is_causal": True}
    if kind == "all":
        memory_mask = rng.random((tgt_len, src_len)) < 0.3
        memory_mask[:, 0] = False
        masks.update(
            memory_mask=memory_mask,
            tgt_key_padding_mask=padding(batch, tgt_len, rng, as_float=True),
            memory_key_padding_mask=padding(batch, src_len, rng),
        )
    return masks


@needs_torch
@pytest.mark.parametrize("masks", DECODER_MASKS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", "callable"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first, activation, batch_first, masks):
    rng = np.random.default_rng(1)
    tgt_len, src_len, batch = 4, 6, 2
    ours, theirs = twins(
        lambda lib: lib.TransformerDecoderLayer(
            D_MODEL,
            NHEAD,
            **layer_kwargs(
                batch_first=batch_first,
                norm_first=norm_first,
                activation=activations(activation)[lib is torch.nn],
            ),
        )
    )
    tgt = sequence(rng, tgt_len, batch, batch_first)
    memory = sequence(rng, src_len, batch, batch_first)
    check_against_torch(
        ours, theirs, [tgt, memory], decoder_masks(masks, tgt_len, src_len, batch, rng), rng
    )


@needs_torch
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("with_norm", [False, True])
def test_encoder_stack_matches_torch_and_detects_the_causal_mask(norm_first, with_norm):
    rng = np.random.default_rng(2)
    length, batch = 6, 2

    def build(lib):
        layer = lib.TransformerEncoderLayer(
            D_MODEL, NHEAD, **layer_kwargs(norm_first=norm_first, batch_first=True)
        )
        norm = lib.LayerNorm(D_MODEL) if with_norm else None
        return lib.TransformerEncoder(layer, 3, norm, enable_nested_tensor=False)

    ours, theirs = twins(build)
    # The layers are copies that start equal, as torch's; make them differ so that a layer
    # applied twice, or out of order, would show.
    for param in theirs.parameters():
        with torch.no_grad():
            param.add_(0.1 * torch.from_numpy(rng.normal(size=tuple(param.shape))))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    src = sequence(rng, length, batch, True)
    masks = {
        "mask": causal(length),
        "src_key_padding_mask": padding(batch, length, rng, as_float=True),
    }
    check_against_torch(ours, theirs, [src], masks, rng)


@needs_torch
def test_decoder_stack_matches_torch():
    rng = np.random.default_rng(3)
    tgt_len, src_len, batch = 5, 7, 3

    def build(lib):
        layer = lib.TransformerDecoderLayer(D_MODEL, NHEAD, **layer_kwargs(activation="gelu"))
        return lib.TransformerDecoder(layer, 2, lib.LayerNorm(D_MODEL))

    ours, theirs = twins(build)
    tgt = sequence(rng, tgt_len, batch, False)
    memory = sequence(rng, src_len, batch, False)
    masks = {"tgt_mask": causal(tgt_len), "memory_key_padding_mask": padding(batch, src_len, rng)}
    check_against_torch(ours, theirs, [tgt, memory], masks, rng)


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_torch(batch_first, norm_first):
    rng = np.random.default_rng(4)
    src_len, tgt_len, batch = 6, 5, 2

    def build(lib):
        return lib.Transformer(
            D_MODEL,
            NHEAD,
            num_encoder_layers=2,
            num_decoder_layers=2,
            **layer_kwargs(batch_first=batch_first, norm_first=norm_first),
        )

    ours, theirs = twins(build)
    src = sequence(rng, src_len, batch, batch_first)
    tgt = sequence(rng, tgt_len, batch, batch_first)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt_len, dtype=np.float64)
    masks = {
        "tgt_mask": tgt_mask.numpy(),
        "src_key_padding_mask": padding(batch, src_len, rng),
        "memory_key_padding_mask": padding(batch, src_len, rng),
    }
    check_against_torch(ours, theirs, [src, tgt], masks, rng)


@needs_torch
def test_unbatched_sequences_match_torch():
    rng = np.random.default_rng(5)
    ours, theirs = twins(
        lambda lib: lib.TransformerEncoderLayer(D_MODEL, NHEAD, **layer_kwargs(norm_first=True))
    )
    check_against_torch(ours, theirs, [sequence(rng, 5, 0, False)], {"src_mask": causal(5)}, rng)


@needs_torch
def test_state_dict_names_and_shapes_are_torchs():
    ours = nn.Transformer(D_MODEL, NHEAD, 2, 1, FF)
    theirs = torch.nn.Transformer(D_MODEL, NHEAD, 2, 1, FF)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }
    assert list(ours.state_dict()) == list(theirs.state_dict())


@needs_torch
@pytest.mark.parametrize("size", [0, 1, 5])
def test_generate_square_subsequent_mask_is_torchs(size):
    mask = nn.Transformer.generate_square_subsequent_mask(size)
    reference = torch.nn.Transformer.generate_square_subsequent_mask(size)
    assert mask.dtype == np.float32 and mask.shape == (size, size)
    np.testing.assert_array_equal(mask.numpy(), reference.numpy())


# ----------------------------------------------------------------------------- without torch
def test_square_subsequent_mask_lets_each_position_see_itself_and_the_past():
    mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=firefly.float64)
    assert mask.dtype == np.float64
    for i in range(4):
        for j in range(4):
            assert mask[i, j].item() == (0.0 if j <= i else float("-inf"))


def test_causal_encoder_outputs_do_not_depend_on_later_positions():
    firefly.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2).double()
    src = firefly.randn(2, 6, D_MODEL, dtype=firefly.float64)
    changed = src.clone()
    changed[:, 4:] = firefly.randn(2, 2, D_MODEL, dtype=firefly.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(6)
    before, after = encoder(src, mask=mask), encoder(changed, mask=mask)
    assert firefly.allclose(before[:, :4], after[:, :4], rtol=1e-12, atol=1e-12)
    assert not firefly.allclose(before[:, 4:], after[:, 4:])


def test_padded_keys_do_not_change_the_real_positions():
    firefly.manual_seed(1)
    layer = nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, dropout=0.0).double()
    tgt = firefly.randn(3, 2, D_MODEL, dtype=firefly.float64)
    memory = firefly.randn(5, 2, D_MODEL, dtype=firefly.float64)
    changed = memory.clone()
    changed[3:] = firefly.randn(2, 2, D_MODEL, dtype=firefly.float64)
    pad = firefly.tensor([[False, False, False, True, True]] * 2)
    before = layer(tgt, memory, memory_key_padding_mask=pad)
    after = layer(tgt, changed, memory_key_padding_mask=pad)
    assert firefly.allclose(before, after, rtol=1e-12, atol=1e-12)
    assert not firefly.allclose(layer(tgt, memory), layer(tgt, changed))


def test_batch_first_is_the_same_layer_on_transposed_inputs():
    firefly.manual_seed(2)
    seq_first = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, norm_first=True)
    batch_first = nn.TransformerEncoderLayer(
        D_MODEL, NHEAD, FF, dropout=0.0, norm_first=True, batch_first=True
    )
    batch_first.load_state_dict(seq_first.state_dict())
    src = firefly.randn(5, 3, D_MODEL)
    np.testing.assert_allclose(
        batch_first(src.transpose(0, 1)).transpose(0, 1).numpy(),
        seq_first(src).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_dropout_draws_in_train_mode_and_is_off_in_eval_mode():
    firefly.manual_seed(3)
    layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.5)
    src = firefly.randn(4, 2, D_MODEL)
    assert not firefly.allclose(layer(src), layer(src))
    layer.eval()
    assert firefly.equal(layer(src), layer(src))


def test_dropout_of_zero_passes_the_tensor_itself_in_train_mode():
    # As torch's: the layers' Dropout(0.0) switches cost no copy of the activations or of
    # their gradients, and the gradient reaches the input unchanged.
    drop = nn.Dropout(0.0)
    assert drop.training
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = drop(x)
    assert y is x
    (y * Tensor(np.full((2, 3), 3.0))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 3.0))
    assert nn.Dropout(0.5)(x) is not x
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.5, training=False) is x


def test_encoder_layer_gradients_match_central_differences():
    firefly.manual_seed(4)
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation="gelu").double()
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=firefly.float64)
    assert gradcheck(lambda src: layer(src, src_mask=mask), firefly.randn(3, 2, 4))


def test_transformer_starts_xavier_uniform_and_learns_to_copy():
    """A one-layer Transformer fits a copy task, gradients flowing through encoder and decoder."""
    firefly.manual_seed(5)
    model = nn.Transformer(D_MODEL, NHEAD, 1, 1, FF, dropout=0.0, batch_first=True)
    bound = np.sqrt(6.0 / (3 * D_MODEL + D_MODEL))  # in_proj_weight: (3 d_model, d_model)
    weight = model.encoder.layers[0].self_attn.in_proj_weight.numpy()
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.9 * bound
    src = firefly.randn(4, 5, D_MODEL)
    optimizer = firefly.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = F.mse_loss(model(src, src), src)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# ----------------------------------------------------------------------------- bad input
def test_d_model_not_divisible_by_nhead_is_refused():
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: d_model \(10\) .* nhead \(3\)"):
        nn.TransformerEncoderLayer(10, 3)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer: d_model \(10\)"):
        nn.TransformerDecoderLayer(10, 4)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation should be 'relu', 'gelu' or a callable"):
        nn.TransformerEncoderLayer(D_MODEL, NHEAD, activation="swish")
    with pytest.raises(TypeError, match="got int"):
        nn.TransformerDecoderLayer(D_MODEL, NHEAD, activation=3)


def test_input_of_the_wrong_feature_size_is_refused_naming_its_shape():
    layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF)
    with pytest.raises(ValueError, match=r"src must be .*d_model=8.*\(5, 2, 6\)"):
        layer(firefly.randn(5, 2, 6))
    with pytest.raises(ValueError, match=r"got shape \(8,\)"):
        layer(firefly.randn(D_MODEL))
    decoder = nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF)
    with pytest.raises(ValueError, match=r"memory must be .*\(5, 2, 4\)"):
        decoder(firefly.randn(3, 2, D_MODEL), firefly.randn(5, 2, 4))


def test_transformer_refuses_mismatched_batches():
    model = nn.Transformer(D_MODEL, NHEAD, 1, 1, FF)
    with pytest.raises(ValueError, match=r"same batch size .*\(5, 2, 8\) and \(4, 3, 8\)"):
        model(firefly.randn(5, 2, D_MODEL), firefly.randn(4, 3, D_MODEL))


def test_stacks_refuse_zero_layers_and_other_layer_kinds():
    layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF)
    with pytest.raises(ValueError, match="num_layers"):
        nn.TransformerEncoder(layer, 0)
    with pytest.raises(TypeError, match="expected a TransformerDecoderLayer"):
        nn.TransformerDecoder(layer, 2)
