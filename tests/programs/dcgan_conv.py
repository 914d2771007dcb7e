"""A convolutional DCGAN, modelled on pytorch/examples dcgan/main.py at a small scale: the
generator upsamples latent noise with ConvTranspose2d + BatchNorm2d + ReLU blocks to a Tanh
image, the discriminator downsamples with strided Conv2d + LeakyReLU(0.2, inplace=True), both
initialized by the example's weights_init (run on torch; the harness copies the weights over),
trained with BCELoss and Adam(betas=(0.5, 0.999)). A final block upsamples a sample batch with
nn.Upsample and F.interpolate and pads it, as image post-processing does.

Differences from the example, made for a deterministic twin run (not for firefly): 16x16
images of blurred squares from a seeded NumPy generator instead of a dataset, the latent noise
from that generator too (torch.randn's stream differs between the libraries), and narrower nets.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

nz, ngf, ndf = 8, 8, 8
real_label, fake_label = 1.0, 0.0


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input).view(-1, 1).squeeze(1)


def build_model():
    model = nn.ModuleDict({"netG": Generator(), "netD": Discriminator()})
    model.apply(weights_init)
    return model.double()


def real_batch(rng, n):
    images = np.full((n, 1, 16, 16), -1.0)
    for i in range(n):
        y, x = rng.integers(2, 9, size=2)
        images[i, 0, y : y + 6, x : x + 6] = 1.0
    blurred = images.copy()
    blurred[:, :, 1:-1, 1:-1] = (
        images[:, :, :-2, 1:-1] + images[:, :, 2:, 1:-1] + images[:, :, 1:-1, :-2]
    ) / 3.0 * 0.5 + images[:, :, 1:-1, 1:-1] * 0.5
    return torch.from_numpy(blurred)


def main(model):
    netG, netD = model["netG"], model["netD"]
    criterion = nn.BCELoss()
    optimizerD = optim.Adam(netD.parameters(), lr=0.002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.002, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    batch_size = 16
    errs_D, errs_G, D_x_series = [], [], []
    for _ in range(12):
        real_cpu = real_batch(rng, batch_size)
        noise = torch.from_numpy(rng.standard_normal((batch_size, nz, 1, 1)))
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
    netG.eval()
    with torch.no_grad():
        samples = netG(torch.from_numpy(rng.standard_normal((4, nz, 1, 1))))
        upsampled = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)(samples)
        resized = F.interpolate(samples, size=(24, 24), mode="nearest")
        framed = F.pad(upsampled, (2, 2, 2, 2), mode="reflect")
    return {
        "losses": errs_D,
        "errs_G": errs_G,
        "D_x": D_x_series,
        "sample_stats": [
            samples.mean().item(),
            (upsampled * upsampled).mean().item(),
            resized.sum().item(),
            framed.abs().sum().item(),
        ],
        "framed_shape": list(framed.shape),
    }
