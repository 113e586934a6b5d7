import os
import pytest
import torch

from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.networks.pemed import ABLATIONS, PROMPT_CHANNELS, PALMInput, PALMOutput, PEMEDNet, TSIP, build_pemed, network_input


@pytest.mark.parametrize("row", sorted(ABLATIONS))
def test_every_ablation_row_runs_and_has_only_its_modules(row):
    net = PEMEDNet(1, ABLATIONS[row]).eval()
    out = net(torch.randn(2, 1 + PROMPT_CHANNELS, 96, 128))
    assert out.shape == (2, 1, 96, 128)
    m = ABLATIONS[row]
    assert (net.palm_i is not None) == m.palm_i and (net.palm_o is not None) == m.palm_o
    assert (net.tsip is not None) == m.tsip and net.self_loop == m.self_loop


def test_three_channel_images_and_wrong_channel_count():
    net = PEMEDNet(3).eval()
    assert net(torch.randn(1, 3 + PROMPT_CHANNELS, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="input channels"):
        net(torch.randn(1, 5, 64, 64))


def test_palm_and_tsip_shapes():
    pos, neg, prev = (torch.rand(2, 1, 128, 128) for _ in range(3))
    e_p = PALMInput(32, 7, 4, 8, "sqrt_d")(pos, neg, prev)
    assert e_p.shape == (2, 32, 32, 32)
    f_i = torch.randn(2, 32, 32, 32)
    assert PALMOutput(32, 8, "d")(f_i, e_p).shape == (2, 32, 32, 32)
    gate = TSIP()(torch.randn(2, 1, 128, 128))
    assert gate.shape == (2, 1, 128, 128) and gate.min() > 0 and gate.max() < 1


def test_tsip_reads_the_previous_logits():
    torch.manual_seed(0)
    net = PEMEDNet(1, ABLATIONS["tsip"]).eval()
    image, maps = torch.randn(1, 1, 64, 64), torch.zeros(1, 2, 64, 64)
    a = net(network_input(image, maps, torch.full((1, 1, 64, 64), -5.0)))
    b = net(network_input(image, maps, torch.full((1, 1, 64, 64), 5.0)))
    assert not torch.allclose(a, b)


def test_a_corrective_step_reads_the_previous_logits_times_the_gain():
    image, maps, prev = torch.rand(1, 1, 8, 8), torch.zeros(1, 2, 8, 8), torch.randn(1, 1, 8, 8)
    plain, gained = network_input(image, maps, prev), network_input(image, maps, prev, gain=4.0)
    assert torch.allclose(gained[:, 4], 4 * prev[:, 0]) and torch.allclose(gained[:, 3], torch.sigmoid(4 * prev[:, 0]))
    assert torch.equal(plain[:, 4], prev[:, 0])


def test_checkpoint_round_trip(tmp_path):
    net = PEMEDNet(1, ABLATIONS["palm"]).eval()
    path = str(tmp_path / "n.pt")
    save_checkpoint(path, net, {"epoch": 3})
    loaded, meta = load_checkpoint(path)
    assert meta == {"epoch": 3} and loaded.switches == net.switches
    x = torch.randn(1, 5, 64, 64)
    assert torch.allclose(net(x), loaded(x))
    assert loaded.palm_scale == "sqrt_d"
    old = {**net.describe()}
    del old["palm_scale"], old["prev_gain"]  # checkpoints from before the options: 1/d_k, previous logits as they are
    assert build_pemed(old).palm_scale == "d" and build_pemed(old).prev_gain == 1.0
    net.prev_gain = 4.0
    save_checkpoint(path, net)
    assert load_checkpoint(path)[0].prev_gain == 4.0
    half = str(tmp_path / "half.pt")
    save_checkpoint(half, net, half=True)
    small, _ = load_checkpoint(half)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(path)
    assert all(p.dtype == torch.float32 for p in small.parameters())
    assert torch.allclose(net(x), small(x), atol=0.05) and not torch.equal(net(x), small(x))
    torch.save({"something": 1}, str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="not a PE-MED checkpoint"):
        load_checkpoint(str(tmp_path / "bad.pt"))


def test_folded_decoder_equals_the_textbook_decoder():
    from lib.networks.mit import MLPDecoder

    torch.manual_seed(0)
    dec = MLPDecoder((32, 64, 160, 256), 64).eval()
    feats = [torch.randn(2, c, 32 // 2 ** i, 32 // 2 ** i) for i, c in enumerate((32, 64, 160, 256))]
    with torch.no_grad():
        assert torch.allclose(dec(feats), dec.forward_reference(feats), atol=1e-4)
    dec.train()
    a, b = dec(feats), dec.forward_reference(feats)
    assert torch.allclose(a, b, atol=1e-4)  # BatchNorm in training mode sees the same fused map
