"""AutoAttack's APGD, APGD-T, Square attack, FAB and FAB-T (fra31/auto-attack: autopgd_base.py, square.py,
fab_base.py, fab_pt.py, fab_projections.py)
transcribed in plain PyTorch for Kiln's fixtures (scripts/make-autoattack-fixtures.py) and for the
Python peer of its benchmark (bench/peers/robust.py). The reference package is not packaged for
Debian. The transcription keeps the reference's structure: index-based updates of the images still
robust, its checkpoint schedule, its random draws from the CPU generator in the same order. `f` maps
pixels in [0, 1] to logits. The random draws come from the CPU generator, as the reference's do. APGD runs on any
device; the Square and FAB transcriptions on the CPU only.
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


def apgd_single_run(f, x, y, eps, norm, n_iter, loss, rho, y_target=None, eot_iter=1):
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
        # EOT: the gradient averaged over eot_iter calls of a randomised model; logits and loss of the last one
        xa = xa.clone().requires_grad_()
        g = torch.zeros_like(x)
        for _ in range(eot_iter):
            with torch.enable_grad():
                logits = f(xa)
                li = crit(logits)
            g += torch.autograd.grad(li.sum(), [xa])[0].detach()
        g /= float(eot_iter)
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


def apgd(f, x, y, eps, norm, n_iter, loss, restarts, rho=0.75, seed=0, n_target_classes=9, eot_iter=1):
    with torch.no_grad():
        acc = f(x).max(1)[1] == y  # as the reference: the clean prediction comes before seeding
    torch.manual_seed(seed)
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
        _, acc_curr, _, adv_curr = apgd_single_run(f, x_to_fool, y_to_fool, eps, norm, n_iter, loss, rho, y_target, eot_iter)
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


def p_selection(p_init, it, n_queries, resc_schedule=True):
    if resc_schedule:  # SquareAttack's default; AutoAttack builds it with resc_schedule=False
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


def square_single_run(f, x, y, eps, norm, n_queries, p_init, resc_schedule=True):
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
            p = p_selection(p_init, i_iter, n_queries, resc_schedule)
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


def square(f, x, y, eps, norm, n_queries, restarts=1, p_init=0.8, seed=0, resc_schedule=True):
    with torch.no_grad():
        acc = f(x).max(1)[1] == y
        adv = x.clone()
        torch.manual_seed(seed)
        for _ in range(restarts):
            ind_to_fool = acc.nonzero().squeeze(1)
            if ind_to_fool.numel() == 0:
                continue
            x_to_fool, y_to_fool = x[ind_to_fool].clone(), y[ind_to_fool].clone()
            adv_curr = square_single_run(f, x_to_fool, y_to_fool, eps, norm, n_queries, p_init, resc_schedule)
            acc_curr = f(adv_curr).max(1)[1] == y_to_fool
            ind_curr = (acc_curr == 0).nonzero().squeeze(1)
            acc[ind_to_fool[ind_curr]] = 0
            adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()
    return adv, acc


# ------------------------------------------------------------------ FAB-T (fab_base.py, fab_pt.py, fab_projections.py)
def projection_linf(points_to_project, w_hyperplane, b_hyperplane):
    device = points_to_project.device
    t, w, b = points_to_project, w_hyperplane.clone(), b_hyperplane.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).float()
    d = (a - t) * (w != 0).float()
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = - ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0].unsqueeze(1)).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (b - b2 <= 0)
    lb = torch.zeros(c2.sum(), device=device)
    ub = torch.full((c2.sum(),), w.shape[1] - 1, device=device, dtype=torch.float)
    nitermax = math.ceil(math.log2(w.shape[1]))
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for counter in range(nitermax):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - counter2)
        b2 = sb_.gather(1, counter2) - s_.gather(1, counter2) * p_.gather(1, indcurr)
        c = b_ - b2.squeeze(1) > 0
        lb = torch.where(c, counter4, lb)
        ub = torch.where(c, ub, counter4)
    lb = lb.long()
    if c_l.any():
        lmbd_opt = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd_opt
    lmbd_opt = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd_opt, d[c2]) * a[c2] + torch.max(-lmbd_opt, d[c2]) * (1 - a[c2])
    return d * (w != 0).float()


def projection_l2(points_to_project, w_hyperplane, b_hyperplane):
    device = points_to_project.device
    t, w, b = points_to_project, w_hyperplane.clone(), b_hyperplane
    c = (w * t).sum(1) - b
    ind2 = c < 0
    w[ind2] *= -1
    c[ind2] *= -1
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r[w.abs() < 1e-8] = 1e12
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = F.pad(rs[:, 1:], (0, 1))
    rs[rs == 1e12] = 0
    rs2[rs2 == 1e12] = 0
    w3s = (w ** 2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).float())
    s = torch.cat(((-w5.squeeze() * rs[:, 0]).unsqueeze(1), torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0].unsqueeze(-1)), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~c4 & ~c3
    lb = torch.zeros(c2.sum(), device=device)
    ub = torch.full((c2.sum(),), w.shape[1] - 1, device=device, dtype=torch.float)
    nitermax = math.ceil(math.log2(w.shape[1]))
    s_, c_ = s[c2], c[c2]
    for counter in range(nitermax):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        c3 = s_.gather(1, counter2).squeeze(1) + c_ > 0
        lb = torch.where(c3, counter4, lb)
        ub = torch.where(c3, ub, counter4)
    lb = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).float()
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).float()


def fab_diff_logits_grads_targeted(f, imgs, la, la_target):
    u = torch.arange(imgs.shape[0])
    im = imgs.clone().requires_grad_()
    with torch.enable_grad():
        y = f(im)
        diffy = -(y[u, la] - y[u, la_target])
        sumdiffy = diffy.sum()
    sumdiffy.backward()
    return diffy.detach().unsqueeze(1), im.grad.data.unsqueeze(1)


def fab_diff_logits_grads(f, imgs, la):
    """get_diff_logits_grads_batch (fab_pt.py): every logit's difference to the true class's and its gradient,
    one backward per class; the true class's difference is set to 1e10 so it is never the closest boundary."""
    im = imgs.clone().requires_grad_()
    with torch.enable_grad():
        y = f(im)
    g2 = torch.zeros([y.shape[-1], *imgs.size()])
    grad_mask = torch.zeros_like(y)
    for counter in range(y.shape[-1]):
        im.grad = None  # the reference's zero_gradients(im)
        grad_mask[:, counter] = 1.0
        y.backward(grad_mask, retain_graph=True)
        grad_mask[:, counter] = 0.0
        g2[counter] = im.grad.data
    g2 = torch.transpose(g2, 0, 1).detach()
    y2 = y.detach()
    u = torch.arange(imgs.shape[0])
    df = y2 - y2[u, la].unsqueeze(1)
    dg = g2 - g2[u, la].unsqueeze(1)
    df[u, la] = 1e10
    return df, dg


def fab_single_run(f, x, y, target_class, eps, norm, n_iter, alpha_max, eta, beta, use_rand_start):
    """attack_single_run (fab_base.py), norms 'linf' and 'l2': targeted towards the target_class-th most likely
    class, or untargeted (target_class None: the closest linearised boundary of every other class)."""
    ndims = len(x.shape[1:])
    x = x.detach().clone().float()
    y_pred = f(x).max(1)[1]
    pred = y_pred == y
    if pred.sum() == 0:
        return x
    pred = pred.nonzero().squeeze(1)
    if target_class is not None:
        output = f(x)
        la_target = output.sort(dim=-1)[1][:, -target_class]
        la_target2 = la_target[pred].detach().clone()
    im2 = x[pred].detach().clone()
    la2 = y[pred].detach().clone()
    bs = im2.shape[0]
    u1 = torch.arange(bs)
    adv = im2.clone()
    adv_c = x.clone()
    res2 = 1e10 * torch.ones([bs])
    x1 = im2.clone()
    x0 = im2.clone().reshape([bs, -1])
    if use_rand_start:
        if norm == 'linf':
            t = 2 * torch.rand(x1.shape) - 1
            x1 = im2 + (torch.min(res2, eps * torch.ones(res2.shape)).reshape([-1, *[1] * ndims])) * t / (
                t.reshape([t.shape[0], -1]).abs().max(dim=1, keepdim=True)[0].reshape([-1, *[1] * ndims])) * .5
        else:
            t = torch.randn(x1.shape)
            x1 = im2 + (torch.min(res2, eps * torch.ones(res2.shape)).reshape([-1, *[1] * ndims])) * t / (
                (t ** 2).view(t.shape[0], -1).sum(dim=-1).sqrt().view(t.shape[0], *[1] * ndims)) * .5
        x1 = x1.clamp(0.0, 1.0)
    for _ in range(n_iter):
        with torch.no_grad():
            if target_class is not None:
                df, dg = fab_diff_logits_grads_targeted(f, x1, la2, la_target2)
            else:
                df, dg = fab_diff_logits_grads(f, x1, la2)
            if norm == 'linf':
                dist1 = df.abs() / (1e-12 + dg.abs().reshape(dg.shape[0], dg.shape[1], -1).sum(dim=-1))
            else:
                dist1 = df.abs() / (1e-12 + (dg ** 2).reshape(dg.shape[0], dg.shape[1], -1).sum(dim=-1).sqrt())
            ind = dist1.min(dim=1)[1]
            dg2 = dg[u1, ind]
            b = (- df[u1, ind] + (dg2 * x1).reshape(x1.shape[0], -1).sum(dim=-1))
            w = dg2.reshape([bs, -1])
            proj = projection_linf if norm == 'linf' else projection_l2
            d3 = proj(torch.cat((x1.reshape([bs, -1]), x0), 0), torch.cat((w, w), 0), torch.cat((b, b), 0))
            d1 = torch.reshape(d3[:bs], x1.shape)
            d2 = torch.reshape(d3[-bs:], x1.shape)
            if norm == 'linf':
                a0 = d3.abs().max(dim=1, keepdim=True)[0].view(-1, *[1] * ndims)
            else:
                a0 = (d3 ** 2).sum(dim=1, keepdim=True).sqrt().view(-1, *[1] * ndims)
            a0 = torch.max(a0, 1e-8 * torch.ones(a0.shape))
            a1 = a0[:bs]
            a2 = a0[-bs:]
            alpha = torch.min(torch.max(a1 / (a1 + a2), torch.zeros(a1.shape)), alpha_max * torch.ones(a1.shape))
            x1 = ((x1 + eta * d1) * (1 - alpha) + (im2 + d2 * eta) * alpha).clamp(0.0, 1.0)
            is_adv = f(x1).max(1)[1] != la2
            if is_adv.sum() > 0:
                ind_adv = is_adv.nonzero().squeeze(1)
                if norm == 'linf':
                    t = (x1[ind_adv] - im2[ind_adv]).reshape([ind_adv.shape[0], -1]).abs().max(dim=1)[0]
                else:
                    t = ((x1[ind_adv] - im2[ind_adv]) ** 2).reshape(ind_adv.shape[0], -1).sum(dim=-1).sqrt()
                adv[ind_adv] = x1[ind_adv] * (t < res2[ind_adv]).float().reshape([-1, *[1] * ndims]) + adv[ind_adv] * (
                    t >= res2[ind_adv]).float().reshape([-1, *[1] * ndims])
                res2[ind_adv] = t * (t < res2[ind_adv]).float() + res2[ind_adv] * (t >= res2[ind_adv]).float()
                x1[ind_adv] = im2[ind_adv] + (x1[ind_adv] - im2[ind_adv]) * beta
    ind_succ = (res2 < 1e10).nonzero().squeeze(1)
    adv_c[pred[ind_succ]] = adv[ind_succ].clone()
    return adv_c


def fab_restart(f, x, y, acc, adv, target_class, eps, norm, n_iter, alpha_max, eta, beta, use_rand_start):
    """One run of FABAttack.perturb on the images still robust (acc, adv updated in place); an adversarial
    image counts only within eps."""
    ind_to_fool = acc.nonzero().squeeze(1)
    if ind_to_fool.numel() == 0:
        return
    x_to_fool, y_to_fool = x[ind_to_fool].clone(), y[ind_to_fool].clone()
    adv_curr = fab_single_run(f, x_to_fool, y_to_fool, target_class, eps, norm, n_iter, alpha_max, eta, beta, use_rand_start)
    acc_curr = f(adv_curr).max(1)[1] == y_to_fool
    if norm == 'linf':
        res = (x_to_fool - adv_curr).abs().reshape(x_to_fool.shape[0], -1).max(1)[0]
    else:
        res = ((x_to_fool - adv_curr) ** 2).reshape(x_to_fool.shape[0], -1).sum(dim=-1).sqrt()
    acc_curr = torch.max(acc_curr, res > eps)
    ind_curr = (acc_curr == 0).nonzero().squeeze(1)
    acc[ind_to_fool[ind_curr]] = 0
    adv[ind_to_fool[ind_curr]] = adv_curr[ind_curr].clone()


def fab_targeted(f, x, y, eps, norm, n_iter, restarts=1, n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9, seed=0):
    """FABAttack.perturb with targeted=True: per target class, restarts runs on the images still robust,
    random starts from the second run on."""
    adv = x.clone()
    with torch.no_grad():
        acc = f(x).max(1)[1] == y
        torch.manual_seed(seed)
        for target_class in range(2, n_target_classes + 2):
            for counter in range(restarts):
                fab_restart(f, x, y, acc, adv, target_class, eps, norm, n_iter, alpha_max, eta, beta, counter > 0)
    return adv, acc


def fab_untargeted(f, x, y, eps, norm, n_iter, restarts=1, alpha_max=0.1, eta=1.05, beta=0.9, seed=0):
    """FABAttack.perturb with targeted=False: restarts runs on the images still robust, random starts from
    the second run on."""
    adv = x.clone()
    with torch.no_grad():
        acc = f(x).max(1)[1] == y
        torch.manual_seed(seed)
        for counter in range(restarts):
            fab_restart(f, x, y, acc, adv, None, eps, norm, n_iter, alpha_max, eta, beta, counter > 0)
    return adv, acc
