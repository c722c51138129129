"""The low-frame-rate front end of the Conformer encoder (encoder.frame_stack)."""
import torch

from hdmole.models.encoder import build_encoder, stack_frames


def test_stack_frames_shapes_lengths_and_values():
    feats = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    out, lens = stack_frames(feats, torch.tensor([7, 5]), 4)
    assert out.shape == (2, 2, 12) and lens.tolist() == [2, 2]
    assert torch.equal(out[0, 0], feats[0, :4].reshape(-1))
    assert torch.equal(out[0, 1, :9], feats[0, 4:7].reshape(-1)) and torch.all(out[0, 1, 9:] == 0)
    assert torch.equal(out[1, 1, :3], feats[1, 4]) and torch.all(out[1, 1, 3:] == 0)  # frames past 5 zeroed


def test_frame_stacked_conformer_is_batch_invariant():
    torch.manual_seed(0)
    enc = build_encoder({"type": "conformer", "input_size": 80, "output_size": 32, "attention_heads": 2,
                         "linear_units": 64, "num_blocks": 2, "input_layer": "linear", "frame_stack": 8}).eval()
    a = torch.randn(1, 45, 80)
    alone, alone_lens = enc(a, torch.tensor([45]))
    batch = torch.cat([a, torch.zeros(1, 35, 80)], 1)
    batch = torch.cat([batch, torch.randn(1, 80, 80)], 0)
    both, lens = enc(batch, torch.tensor([45, 80]))
    assert alone_lens.tolist() == [6] and lens.tolist() == [6, 10]
    torch.testing.assert_close(both[0, :6], alone[0], rtol=1e-5, atol=1e-5)
