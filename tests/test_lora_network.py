"""The LoRA network on a tiny SD model: injection, strength, training, parameter groups."""

import pytest

from lora_helpers import load_parts, randomize, text_out, token_ids, unet_inputs, unet_out


@pytest.fixture
def parts(tiny_model):
    return load_parts(tiny_model("tiny-v1"))


def test_fresh_network_changes_nothing_and_remove_restores_the_model(parts):
    import torch

    from trainer.networks import create_network

    unet, text = parts
    inputs, ids = unet_inputs(), token_ids()
    base, base_text = unet_out(unet, inputs), text_out(text, ids)
    keys_before = list(unet.state_dict())
    net = create_network(unet, text, dim=4, alpha=1, conv_dim=2).apply()
    assert torch.equal(unet_out(unet, inputs), base)  # lora_up starts at zero
    randomize(net)
    changed, changed_text = unet_out(unet, inputs), text_out(text, ids)
    assert (changed - base).abs().max() > 1e-3 and (changed_text - base_text).abs().max() > 1e-3
    net.set_multiplier(0)
    assert torch.equal(unet_out(unet, inputs), base)
    net.set_multiplier(1)
    net.remove()
    assert not net.applied
    assert torch.equal(unet_out(unet, inputs), base) and torch.equal(text_out(text, ids), base_text)
    assert list(unet.state_dict()) == keys_before
    assert not any(m._forward_hooks for m in unet.modules())


def test_multiplier_scales_each_layer_update(parts):
    import torch

    from trainer.networks import create_network

    unet, text = parts
    net = randomize(create_network(unet, text, dim=4, alpha=2, conv_dim=2, conv_alpha=1))
    for layer in (net.unet_loras[0], next(l for l in net.unet_loras if l.is_conv),
                  net.text_encoder_loras[0]):
        target = layer.target
        x = torch.randn(2, *((target.in_channels, 8, 8) if layer.is_conv else (5, target.in_features)))
        with torch.no_grad():
            plain = target(x)
            net.apply()
            full = target(x) - plain
            net.set_multiplier(0.5)
            half = target(x) - plain
            net.set_multiplier(1)
            net.remove()
        torch.testing.assert_close(half, full * 0.5)
        # the update is exactly the merged weight delta applied to x
        delta = layer.delta_weight()
        expected = (torch.nn.functional.conv2d(x, delta, stride=target.stride,
                                               padding=target.padding)
                    if layer.is_conv else x @ delta.T)
        torch.testing.assert_close(full, expected, rtol=1e-4, atol=1e-5)


def test_a_few_steps_change_the_output_and_never_touch_the_base(parts):
    import torch

    from trainer.networks import create_network

    unet, text = parts
    unet.to(torch.bfloat16).requires_grad_(False)  # the loop keeps the frozen base in bf16/fp16
    text.to(torch.bfloat16).requires_grad_(False)
    base_weights = {k: v.clone() for k, v in {**unet.state_dict(), **text.state_dict()}.items()}
    inputs, ids = unet_inputs(), token_ids()
    before = unet_out(unet, inputs)
    net = create_network(unet, text, dim=4, alpha=4, conv_dim=2).apply()
    params = net.trainable_parameters()
    assert params and all(p.dtype == torch.float32 for p in params)
    optimizer = torch.optim.AdamW(net.param_groups(None, None, 1e-3))
    sample, timestep, _ = inputs
    target = torch.randn_like(sample)
    for _ in range(3):
        context = text(ids)[0]
        pred = unet(sample.to(torch.bfloat16), timestep, context).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = unet_out(unet, inputs)
    assert (after - before).abs().max() > 1e-2
    assert all(p.dtype == torch.float32 for p in params)
    now = {**unet.state_dict(), **text.state_dict()}
    assert all(torch.equal(now[k], v) for k, v in base_weights.items())
    net.remove()
    assert torch.equal(unet_out(unet, inputs), before)


def test_param_groups_follow_the_learning_rates(parts):
    from trainer.networks import create_network

    unet, text = parts
    net = create_network(unet, text, dim=4, alpha=1)
    groups = {g["name"]: g for g in net.param_groups(1e-4, 5e-5, 1e-3)}
    assert {n: g["lr"] for n, g in groups.items()} == {"unet": 1e-4, "text_encoder": 5e-5}
    total = sum(len(list(g["params"])) for g in groups.values())
    assert total == len(net.trainable_parameters()) == 2 * len(net.loras)

    groups = net.param_groups(None, 0, 1e-3)  # text_encoder_lr=0: the text encoder LoRA rests
    assert [(g["name"], g["lr"]) for g in groups] == [("unet", 1e-3)]
    assert len(net.trainable_parameters()) == 2 * len(net.unet_loras)

    plus = create_network(unet, text, dim=4, alpha=1, loraplus_lr_ratio=16)
    lrs = {g["name"]: g["lr"] for g in plus.param_groups(1e-4, None, 1e-4)}
    assert lrs == {"text_encoder": 1e-4, "text_encoder plus": 16e-4, "unet": 1e-4,
                   "unet plus": 16e-4}


def test_parts_can_be_left_out(parts):
    from trainer.networks import create_network

    unet, text = parts
    unet_only = create_network(unet, text, dim=4, alpha=1, train_text_encoder=False)
    te_only = create_network(unet, text, dim=4, alpha=1, train_unet=False)
    assert unet_only.unet_loras and not unet_only.text_encoder_loras
    assert all(k.startswith("lora_unet_") for k in unet_only.state_dict_kohya())
    assert all(k.startswith("lora_te_") for k in te_only.state_dict_kohya())


def test_dropouts_act_only_while_training(parts):
    import torch

    from trainer.networks import create_network

    unet, text = parts
    net = randomize(create_network(unet, text, dim=4, alpha=4, dropout=0.5, rank_dropout=0.3,
                                   module_dropout=0.2)).apply()
    inputs = unet_inputs()
    quiet = unet_out(unet, inputs)  # no_grad: sampling never drops
    assert torch.equal(unet_out(unet, inputs), quiet)
    sample, timestep, context = inputs
    torch.manual_seed(0)
    noisy = [unet(sample, timestep, context).sample.detach() for _ in range(2)]
    assert not torch.equal(noisy[0], noisy[1])
    net.eval()
    assert torch.equal(unet(sample, timestep, context).sample.detach(), quiet)


def test_network_for_config_reads_network_args_and_parts(parts):
    from trainer.config import Config
    from trainer.networks import create_network_for_config

    unet, text = parts
    cfg = Config("lora", {"network_dim": 8, "network_alpha": 4, "network_args":
                          ["conv_dim=2", "rank_dropout=0.1", "loraplus_lr_ratio=4"],
                          "network_train_unet_only": True})
    setup = create_network_for_config(cfg, unet, text)
    net = setup.network
    assert not net.text_encoder_loras
    assert {l.dim for l in net.unet_loras} == {8, 2}
    assert net.settings.conv_dim == 2 and net.settings.conv_alpha == 1.0
    assert net.unet_loras[0].rank_dropout == 0.1 and net.settings.loraplus_lr_ratio == 4
    assert setup.args == {"conv_dim": 2, "rank_dropout": 0.1, "loraplus_lr_ratio": 4.0}


def test_every_layer_gets_gradients_under_gradient_checkpointing(parts):
    from trainer.networks import create_network

    unet, text = parts
    unet.requires_grad_(False).train().enable_gradient_checkpointing()
    net = randomize(create_network(unet, text, dim=4, alpha=4, conv_dim=2,
                                   train_text_encoder=False)).apply()
    # 16x16 latents: the innermost attention then sees 4 tokens (with 1, q and k get no gradient)
    sample, timestep, context = unet_inputs(size=16)
    unet(sample, timestep, context).sample.pow(2).mean().backward()
    assert all(l.lora_down.weight.grad is not None and l.lora_down.weight.grad.abs().sum() > 0
               for l in net.loras)
