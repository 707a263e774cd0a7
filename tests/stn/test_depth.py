"""Tests of the depth buffer and its topology tables (stn/depth.py)."""

import math

import torch

from stn3dmm.stn import layers as L
from stn3dmm.stn.depth import _edge_table, _topology, depth_buffer
from testkit import synthetic_models as syn


def _t(a, dtype=torch.float64):
    return torch.as_tensor(a, dtype=dtype)


def test_depth_buffer_has_no_holes_and_right_depths():
    # a tilted plane: every buffer pixel whose square lies inside the projection must be filled
    v, f = syn.make_plane((-40, 40), (-40, 40), 0.0, n=25)
    R = L.axis_angle_to_rotation(torch.tensor([[0.5, 0.7, 0.2]], dtype=torch.float64))
    vp = L.rotate(_t(v)[None], R)
    db = depth_buffer(vp, _t(f, torch.long))
    buf, (x0, y0), h = db["buffer"][0], db["origin"][0].tolist(), float(db["pixel"][0])
    hb, wb = buf.shape
    yy, xx = torch.meshgrid(torch.arange(hb, dtype=torch.float64), torch.arange(wb, dtype=torch.float64), indexing="ij")
    # pixel corners -> back into the plane's frame: inside if all four corners are inside the square
    nrm = R[0, :, 2]
    inside = torch.ones_like(buf, dtype=torch.bool)
    depth_at_centre = None
    for dx in (0.0, 1.0):
        for dy in (0.0, 1.0):
            px, py = x0 + (xx + dx) * h, y0 + (yy + dy) * h
            pz = -(nrm[0] * px + nrm[1] * py) / nrm[2]  # on the plane through the origin
            local = torch.stack([px, py, pz], -1) @ R[0]  # back to plane coordinates
            inside &= (local[..., :2].abs() <= 40.0).all(-1)
    cx, cy = x0 + (xx + 0.5) * h, y0 + (yy + 0.5) * h
    depth_at_centre = -(nrm[0] * cx + nrm[1] * cy) / nrm[2]
    assert inside.sum() > 100
    assert torch.isfinite(buf[inside]).all()
    # the stored max depth is within the pixel's depth range of the plane
    slope = float(nrm[:2].norm() / nrm[2].abs())
    assert ((buf[inside] - depth_at_centre[inside]).abs() <= slope * h * math.sqrt(2) / 2 + 1e-9).all()


def test_topology_tables_are_cached_per_faces_tensor_and_redone_when_it_changes():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    a = _topology(faces, 4)
    assert _topology(faces, 4) is a                                  # the same tensor: no recomputation
    assert _topology(faces.clone(), 4) is not a                      # another tensor: its own tables
    faces[1] = torch.tensor([0, 3, 1])                               # modified in place: recomputed
    b = _topology(faces, 4)
    assert b is not a and torch.equal(b["edges"], _edge_table(faces, 4)[0])
