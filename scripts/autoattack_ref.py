"""AutoAttack's APGD, APGD-T and Square attack (fra31/auto-attack: autopgd_base.py, square.py)
transcribed in plain PyTorch for Kiln's fixtures (scripts/make-autoattack-fixtures.py) and for the
Python peer of its benchmark (bench/peers/robust.py). The reference package is not packaged for
Debian. The transcription keeps the reference's structure: index-based updates of the images still
robust, its checkpoint schedule, its random draws from the CPU generator in the same order. `f` maps
pixels in [0, 1] to logits. The random draws come from the CPU generator, as the reference's do. APGD runs on any
device; the Square transcription on the CPU only.
"""
import math

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ APGD (autopgd_base.py)
def normalize(x, norm):
    if norm == 'linf':
        t = x.abs().view(x.shape[0], -1).max(1)[0]
    else:
        t = (x ** 2).view(x.shape[0], -1).sum(-1).sqrt()
    return x / (t.view(-1, 1, 1, 1) + 1e-12)


def lp_norm(x):
    return (x ** 2).view(x.shape[0], -1).sum(-1).sqrt().view(-1, 1, 1, 1)


def dlr_loss(x, y):
    x_sorted, ind_sorted = x.sort(dim=1)
    ind = (ind_sorted[:, -1] == y).float()
    u = torch.arange(x.shape[0])
    return -(x[u, y] - x_sorted[:, -2] * ind - x_sorted[:, -1] * (1. - ind)) / (x_sorted[:, -1] - x_sorted[:, -3] + 1e-12)


def dlr_loss_targeted(x, y, y_target):
    x_sorted, _ = x.sort(dim=1)
    u = torch.arange(x.shape[0])
    return -(x[u, y] - x[u, y_target]) / (x_sorted[:, -1] - .5 * (x_sorted[:, -3] + x_sorted[:, -4]) + 1e-12)


def check_oscillation(x, j, k, k3):
    t = torch.zeros(x.shape[1], device=x.device)
    for c in range(k):
        t += (x[j - c] > x[j - c - 1]).float()
    return (t <= k * k3 * torch.ones_like(t)).float()


def apgd_single_run(f, x, y, eps, norm, n_iter, loss, rho, y_target=None):
    n_iter_2, n_iter_min, size_decr = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)
    if norm == 'linf':
        t = 2 * torch.rand(x.shape).to(x.device) - 1
    else:
        t = torch.randn(x.shape).to(x.device)
    x_adv = (x + eps * torch.ones_like(x) * normalize(t, norm)).clamp(0., 1.)
    x_best, x_best_adv = x_adv.clone(), x_adv.clone()
    loss_steps = torch.zeros([n_iter, x.shape[0]], device=x.device)
    crit = {'ce': lambda z: F.cross_entropy(z, y, reduction='none'), 'dlr': lambda z: dlr_loss(z, y),
            'dlr-targeted': lambda z: dlr_loss_targeted(z, y, y_target)}[loss]

    def grad_of(xa):
        xa = xa.clone().requires_grad_()
        with torch.enable_grad():
            logits = f(xa)
            li = crit(logits)
        g = torch.autograd.grad(li.sum(), [xa])[0].detach()
        return g, logits.detach(), li.detach()

    grad, logits, loss_indiv = grad_of(x_adv)
    grad_best = grad.clone()
    acc = logits.max(1)[1] == y
    loss_best = loss_indiv.clone()
    step_size = 2. * eps * torch.ones([x.shape[0], 1, 1, 1], device=x.device)
    x_adv_old = x_adv.clone()
    k = n_iter_2
    counter3 = 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones_like(loss_best)
    for i in range(n_iter):
        with torch.no_grad():
            grad2 = x_adv - x_adv_old
            x_adv_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            if norm == 'linf':
                x_adv_1 = x_adv + step_size * torch.sign(grad)
                x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
                x_adv_1 = torch.clamp(torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps), 0.0, 1.0)
            else:
                x_adv_1 = x_adv + step_size * normalize(grad, 'l2')
                x_adv_1 = torch.clamp(x + normalize(x_adv_1 - x, 'l2') * torch.min(eps * torch.ones_like(x), lp_norm(x_adv_1 - x)), 0.0, 1.0)
                x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
                x_adv_1 = torch.clamp(x + normalize(x_adv_1 - x, 'l2') * torch.min(eps * torch.ones_like(x), lp_norm(x_adv_1 - x)), 0.0, 1.0)
            x_adv = x_adv_1 + 0.
        grad, logits, loss_indiv = grad_of(x_adv)
        pred = logits.max(1)[1] == y
        acc = torch.min(acc, pred)
        ind_pred = (pred == 0).nonzero().squeeze()
        x_best_adv[ind_pred] = x_adv[ind_pred] + 0.
        with torch.no_grad():
            y1 = loss_indiv.clone()
            loss_steps[i] = y1 + 0
            ind = (y1 > loss_best).nonzero().squeeze()
            x_best[ind] = x_adv[ind].clone()
            grad_best[ind] = grad[ind].clone()
            loss_best[ind] = y1[ind] + 0
            counter3 += 1
            if counter3 == k:
                fl_osc = check_oscillation(loss_steps, i, k, rho)
                fl_reduce_no_impr = (1. - reduced_last_check) * (loss_best_last_check >= loss_best).float()
                fl_osc = torch.max(fl_osc, fl_reduce_no_impr)
                reduced_last_check = fl_osc.clone()
                loss_best_last_check = loss_best.clone()
                if fl_osc.sum() > 0:
                    ind_fl_osc = (fl_osc > 0).nonzero().squeeze()
                    step_size[ind_fl_osc] /= 2.0
                    x_adv[ind_fl_osc] = x_best[ind_fl_osc].clone()
                    grad[ind_fl_osc] = grad_best[ind_fl_osc].clone()
                k = max(k - size_decr, n_iter_min)
                counter3 = 0
    return x_best, acc, loss_best, x_best_adv


def apgd(f, x, y, eps, norm, n_iter, loss, restarts, rho=0.75, seed=0, n_target_classes=9):
    torch.manual_seed(seed)
    with torch.no_grad():
        acc = f(x).max(1)[1] == y
    adv = x.clone()
    rounds = [(None, c) for c in range(restarts)] if loss != 'dlr-targeted' else \
        [(tc, c) for tc in range(2, n_target_classes + 2) for c in range(restarts)]
    for target_class, _ in rounds:
        ind_to_fool = acc.nonzero().squeeze(1)
        if ind_to_fool.numel() == 0:
            continue
        x_to_fool, y_to_fool = x[ind_to_fool].clone(), y[ind_to_fool].clone()
        y_target = None
        if target_class is not None:
            with torch.no_grad():
                y_target = f(x_to_fool).sort(dim=1)[1][:, -target_class]
        _, acc_curr, _, adv_curr = apgd_single_run(f, x_to_fool, y_to_fool, eps, norm, n_iter, loss, rho, y_target)
        ind_curr = (acc_curr == 0).nonzero().squeeze(1)
        acc[ind_to_fool[ind_curr]] = 0
        adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()
    return adv, acc


# ------------------------------------------------------------------ Square attack (square.py)
def margin_and_loss(f, x, y):
    logits = f(x)
    u = torch.arange(x.shape[0])
    y_corr = logits[u, y].clone()
    logits[u, y] = -float('inf')
    y_others = logits.max(dim=-1)[0]
    return y_corr - y_others, y_corr - y_others


def random_choice(shape):
    return torch.sign(2 * torch.rand(shape) - 1)


def random_int(low, high):
    return (low + (high - low) * torch.rand([1])).long()


def p_selection(p_init, it, n_queries):
    it = int(it / n_queries * 10000)
    for lo, hi, div in [(10, 50, 2), (50, 200, 4), (200, 500, 8), (500, 1000, 16), (1000, 2000, 32), (2000, 4000, 64),
                        (4000, 6000, 128), (6000, 8000, 256)]:
        if lo < it <= hi:
            return p_init / div
    return p_init / 512 if it > 8000 else p_init


def eta_rectangles(x, y):
    delta = torch.zeros([x, y])
    x_c, y_c = x // 2 + 1, y // 2 + 1
    c2 = [x_c - 1, y_c - 1]
    for counter in range(0, max(x_c, y_c)):
        delta[max(c2[0], 0):min(c2[0] + (2 * counter + 1), x), max(0, c2[1]):min(c2[1] + (2 * counter + 1), y)] += 1.0 / (torch.Tensor([counter + 1]).view(1, 1) ** 2)
        c2[0] -= 1
        c2[1] -= 1
    return delta / (delta ** 2).sum(dim=(0, 1), keepdim=True).sqrt()


def eta(s):
    delta = torch.zeros([s, s])
    delta[:s // 2] = eta_rectangles(s // 2, s)
    delta[s // 2:] = -1. * eta_rectangles(s - s // 2, s)
    delta /= (delta ** 2).sum(dim=(0, 1), keepdim=True).sqrt()
    if torch.rand([1]) > 0.5:
        delta = delta.permute([1, 0])
    return delta


def square_single_run(f, x, y, eps, norm, n_queries, p_init):
    with torch.no_grad():
        c, h, w = x.shape[1:]
        n_features = c * h * w
        if norm == 'linf':
            x_best = torch.clamp(x + eps * random_choice([x.shape[0], c, 1, w]), 0., 1.)
        else:
            delta_init = torch.zeros_like(x)
            s = h // 5
            sp_init = (h - s * 5) // 2
            vh = sp_init + 0
            for _ in range(h // s):
                vw = sp_init + 0
                for _ in range(w // s):
                    delta_init[:, :, vh:vh + s, vw:vw + s] += eta(s).view(1, 1, s, s) * random_choice([x.shape[0], c, 1, 1])
                    vw += s
                vh += s
            x_best = torch.clamp(x + normalize(delta_init, 'l2') * eps, 0., 1.)
        margin_min, loss_min = margin_and_loss(f, x_best, y)
        for i_iter in range(n_queries):
            idx_to_fool = (margin_min > 0.0).nonzero().squeeze(1)
            x_curr, x_best_curr, y_curr = x[idx_to_fool], x_best[idx_to_fool], y[idx_to_fool]
            margin_min_curr, loss_min_curr = margin_min[idx_to_fool], loss_min[idx_to_fool]
            p = p_selection(p_init, i_iter, n_queries)
            if norm == 'linf':
                s = max(int(round(math.sqrt(p * n_features / c))), 1)
                vh = random_int(0, h - s)
                vw = random_int(0, w - s)
                new_deltas = torch.zeros([c, h, w])
                new_deltas[:, vh:vh + s, vw:vw + s] = 2. * eps * random_choice([c, 1, 1])
                x_new = torch.clamp(torch.min(torch.max(x_best_curr + new_deltas, x_curr - eps), x_curr + eps), 0., 1.)
            else:
                delta_curr = x_best_curr - x_curr
                s = max(int(round(math.sqrt(p * n_features / c))), 3)
                if s % 2 == 0:
                    s += 1
                vh = random_int(0, h - s)
                vw = random_int(0, w - s)
                new_deltas_mask = torch.zeros_like(x_curr)
                new_deltas_mask[:, :, vh:vh + s, vw:vw + s] = 1.0
                norms_window_1 = (delta_curr[:, :, vh:vh + s, vw:vw + s] ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
                vh2 = random_int(0, h - s)
                vw2 = random_int(0, w - s)
                new_deltas_mask_2 = torch.zeros_like(x_curr)
                new_deltas_mask_2[:, :, vh2:vh2 + s, vw2:vw2 + s] = 1.
                norms_image = lp_norm(x_best_curr - x_curr)
                mask_image = torch.max(new_deltas_mask, new_deltas_mask_2)
                norms_windows = lp_norm(delta_curr * mask_image)
                new_deltas = torch.ones([x_curr.shape[0], c, s, s])
                new_deltas *= (eta(s).view(1, 1, s, s) * random_choice([x_curr.shape[0], c, 1, 1]))
                old_deltas = delta_curr[:, :, vh:vh + s, vw:vw + s] / (1e-12 + norms_window_1)
                new_deltas += old_deltas
                new_deltas = new_deltas / (1e-12 + (new_deltas ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()) * (
                    torch.max((eps * torch.ones_like(new_deltas)) ** 2 - norms_image ** 2, torch.zeros_like(new_deltas)) / c + norms_windows ** 2).sqrt()
                delta_curr[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.
                delta_curr[:, :, vh:vh + s, vw:vw + s] = new_deltas + 0
                x_new = torch.clamp(x_curr + normalize(delta_curr, 'l2') * eps, 0., 1.)
            margin, loss = margin_and_loss(f, x_new, y_curr)
            idx_improved = (loss < loss_min_curr).float()
            loss_min[idx_to_fool] = idx_improved * loss + (1. - idx_improved) * loss_min_curr
            idx_improved = torch.max(idx_improved, (margin <= 0.).float())
            margin_min[idx_to_fool] = idx_improved * margin + (1. - idx_improved) * margin_min_curr
            idx_improved = idx_improved.reshape([-1, 1, 1, 1])
            x_best[idx_to_fool] = idx_improved * x_new + (1. - idx_improved) * x_best_curr
            if (margin_min <= 0.).sum() == x.shape[0]:
                break
    return x_best


def square(f, x, y, eps, norm, n_queries, restarts=1, p_init=0.8, seed=0):
    with torch.no_grad():
        acc = f(x).max(1)[1] == y
        adv = x.clone()
        torch.manual_seed(seed)
        for _ in range(restarts):
            ind_to_fool = acc.nonzero().squeeze(1)
            if ind_to_fool.numel() == 0:
                continue
            x_to_fool, y_to_fool = x[ind_to_fool].clone(), y[ind_to_fool].clone()
            adv_curr = square_single_run(f, x_to_fool, y_to_fool, eps, norm, n_queries, p_init)
            acc_curr = f(adv_curr).max(1)[1] == y_to_fool
            ind_curr = (acc_curr == 0).nonzero().squeeze(1)
            acc[ind_to_fool[ind_curr]] = 0
            adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()
    return adv, acc
