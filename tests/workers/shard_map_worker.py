"""fastlstm.jax under jax.shard_map over a batch-sharded mesh of 2 host CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=2, set by the
caller): gradients of a loss averaged across the shards against the same
gradients of one device on the full batch. Run by tests/test_distributed.py."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

import fastlstm
import fastlstm.jax as fj

jax.config.update("jax_enable_x64", True)
assert jax.device_count() == 2, jax.devices()
try:
    shard_map = jax.shard_map  # types the manual axes each value varies over
    TYPED = True
except AttributeError:  # jax < 0.7: its replication check knows no custom call
    import functools

    from jax.experimental.shard_map import shard_map
    shard_map = functools.partial(shard_map, check_rep=False)
    TYPED = False

layer = fastlstm.LSTM(5, 8, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
params = {k: jnp.asarray(v) for k, v in layer.state_dict().items()}
rng = np.random.default_rng(0)
B, T = 6, 9
x = jnp.asarray(rng.standard_normal((B, T, 5)))
lengths = jnp.asarray(rng.integers(1, T + 1, B).astype(np.int32))
target = jnp.asarray(rng.standard_normal((B, 16)))


def loss(params, x, lengths, target):
    _, (h, _) = fj.lstm(params, x, lengths=lengths, batch_first=True)
    return jnp.mean((jnp.concatenate([h[-2], h[-1]], axis=1) - target) ** 2)


full = jax.jit(jax.value_and_grad(loss))(params, x, lengths, target)

mesh = Mesh(np.array(jax.devices()), ("batch",))


def per_shard(params, x, lengths, target):
    if TYPED:  # the whole batch's loss, the mean of the shards' means (equal
        # shards); its gradient in the replicated params comes out replicated
        def global_loss(p):
            return jax.lax.pmean(loss(p, x, lengths, target), "batch")
        return jax.value_and_grad(global_loss)(params)
    value, grads = jax.value_and_grad(loss)(params, x, lengths, target)  # untyped: by hand
    return jax.lax.pmean(value, "batch"), jax.lax.pmean(grads, "batch")


sharded = jax.jit(shard_map(per_shard, mesh=mesh,
                            in_specs=(P(), P("batch"), P("batch"), P("batch")),
                            out_specs=(P(), P())))
value, grads = sharded(params, x, lengths, target)

# The forward alone, its outputs sharded like the batch.
def outputs(params, x, lengths):
    y, (h, c) = fj.lstm(params, x, lengths=lengths, batch_first=True)
    return y, h, c


want = outputs(params, x, lengths)
got = jax.jit(shard_map(outputs, mesh=mesh, in_specs=(P(), P("batch"), P("batch")),
                        out_specs=(P("batch"), P(None, "batch"), P(None, "batch"))))(
    params, x, lengths)
for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)  # B=3 vs 6 tiles: rounding
np.testing.assert_allclose(value, full[0], rtol=1e-12)
for k in params:
    np.testing.assert_allclose(grads[k], full[1][k], rtol=1e-10, atol=1e-13, err_msg=k)
assert max(float(jnp.abs(g).max()) for g in grads.values()) > 1e-3
print("shard_map: loss and gradients equal the full batch's on one device")
