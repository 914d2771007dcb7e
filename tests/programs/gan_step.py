"""A GAN training step, modelled on pytorch/examples dcgan/main.py with fully-connected nets
on a 2-D toy distribution: the discriminator is trained on real and detached fake batches,
then the generator against the discriminator's labels, with BCELoss and Adam(betas=(0.5,
0.999)) as in the example. Both networks live in one ModuleDict.

Differences from the example, made for a deterministic twin run (not for firefly): the
latent noise and the real samples come from a seeded NumPy generator (torch.randn's stream
differs between the libraries), and the nets are small MLPs.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

nz = 4
real_label = 1.0
fake_label = 0.0


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Linear(nz, 16), nn.LeakyReLU(0.2, inplace=True), nn.Linear(16, 2)
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Linear(2, 16), nn.LeakyReLU(0.2, inplace=True), nn.Linear(16, 1), nn.Sigmoid()
        )

    def forward(self, input):
        return self.main(input).view(-1, 1).squeeze(1)


def build_model():
    return nn.ModuleDict({"netG": Generator(), "netD": Discriminator()}).double()


def main(model):
    netG, netD = model["netG"], model["netD"]
    criterion = nn.BCELoss()
    optimizerD = optim.Adam(netD.parameters(), lr=0.002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.002, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    batch_size = 32
    errs_D, errs_G, D_x_series = [], [], []
    for _ in range(40):
        real_cpu = torch.from_numpy(rng.normal([2.0, -1.0], 0.5, size=(batch_size, 2)))
        noise = torch.from_numpy(rng.standard_normal((batch_size, nz)))
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype)
        output = netD(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        errD = errD_real + errD_fake
        optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        optimizerG.step()
        errs_D.append(errD.item())
        errs_G.append(errG.item())
        D_x_series.append(D_x)
    with torch.no_grad():
        samples = netG(torch.from_numpy(rng.standard_normal((256, nz))))
    return {
        "losses": errs_D,
        "errs_G": errs_G,
        "D_x": D_x_series,
        "sample_mean": samples.mean(0).tolist(),
    }
