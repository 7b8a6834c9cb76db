"""Learner-style implementations of chapter 5's data-parallel step (notebook 04_recipe_and_scale).

Each function is what a rank runs inside the process group the check starts. ``CORRECT`` holds
implementations written differently from the solution; ``MISTAKES`` one learner per known mistake, written
as the bug is written in practice.
"""

import torch
import torch.distributed as dist


def per_parameter(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    """Broadcast and all-reduce one parameter at a time (the solution's shape)."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        loss = loss_fn(model(inputs[rows]), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()


def broadcast_the_parameter(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    """The Parameter itself broadcast in grad mode (no .data, no torch.no_grad()); rows drawn with size=."""
    world_size = dist.get_world_size()
    for p in model.parameters():
        dist.broadcast(p, src=0)
    generator = torch.Generator().manual_seed(seed + dist.get_rank())
    for _ in range(steps):
        rows = torch.randint(0, len(inputs), size=(batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for group in optimizer.param_groups:
            for p in group["params"]:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(world_size)
        optimizer.step()


def flat_buffer(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    """One flat buffer for the weights and one for the gradients: a single collective each (as DDP's buckets)."""
    params = list(model.parameters())
    weights = torch.nn.utils.parameters_to_vector(params)
    dist.broadcast(weights, 0)
    torch.nn.utils.vector_to_parameters(weights, params)
    g = torch.Generator()
    g.manual_seed(seed + dist.get_rank())
    for step in range(steps):
        for p in params:
            p.grad = None
        idx = torch.randint(0, inputs.shape[0], (batch_per_rank,), generator=g)
        loss_fn(model(inputs.index_select(0, idx)), targets.index_select(0, idx)).backward()
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat / dist.get_world_size()
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        optimizer.step()


def state_dict_broadcast(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    """Broadcast through the state dict, average by scaling the loss and summing the gradients."""
    world = dist.get_world_size()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
    gen = torch.Generator().manual_seed(seed + dist.get_rank())
    for _ in range(steps):
        batch = torch.randint(len(inputs), (batch_per_rank,), generator=gen)
        optimizer.zero_grad(set_to_none=False)
        (loss_fn(model(inputs[batch]), targets[batch]) / world).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        optimizer.step()


def sum_without_divide(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    rank = dist.get_rank()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
        optimizer.step()


def same_seed_everywhere(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    world_size = dist.get_world_size()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()


def forgot_broadcast(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()


def no_communication(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    rank = dist.get_rank()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        optimizer.step()


def never_zeroed(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()


CORRECT = {"data_parallel_step": [per_parameter, flat_buffer, state_dict_broadcast, broadcast_the_parameter]}

MISTAKES = {
    "data_parallel_step": {
        "not_averaged": sum_without_divide,
        "same_shard": same_seed_everywhere,
        "no_broadcast": forgot_broadcast,
        "no_all_reduce": no_communication,
        "grads_not_zeroed": never_zeroed,
    },
}
