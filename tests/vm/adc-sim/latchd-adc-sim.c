// SPDX-License-Identifier: GPL-2.0
/*
 * latchd-adc-sim: a virtual SPI controller with one MCP3008-class ADC on
 * chip select 0, for latchd's VM rig (tests/vm). The device is bound to
 * spidev, so latchd's real SPI path (/dev/spidevB.0, ioctl transfers,
 * the MCP3008 driver) runs unchanged; the test sets what each channel
 * reads through the module parameter
 *
 *     /sys/module/latchd_adc_sim/parameters/counts   "c0,c1,...,c7" (0-1023)
 *
 * e.g. the motor-current channel jumps to a stall level while the motor
 * turns. Conversions are counted in .../parameters/conversions (read-only)
 * so a test can see the driver sampling.
 *
 * One conversion is one 3-byte full-duplex transfer:
 *   MOSI: 0000_0001  SGL D2 D1 D0 xxxx  xxxx_xxxx
 *   MISO: xxxx_xxxx  xxxx x 0 B9 B8     B7 ... B0
 */
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/spi/spi.h>
#include <linux/minmax.h>
#include <linux/string.h>

static int counts[8];
static int nr_counts = 8;
module_param_array(counts, int, &nr_counts, 0644);
MODULE_PARM_DESC(counts, "conversion result of channels 0-7 (0-1023)");

static unsigned long conversions;
module_param(conversions, ulong, 0444);
MODULE_PARM_DESC(conversions, "single-ended conversions answered so far");

static struct platform_device *adc_sim_pdev;

static int adc_sim_transfer_one(struct spi_controller *ctlr,
				struct spi_device *spi,
				struct spi_transfer *t)
{
	const u8 *tx = t->tx_buf;
	u8 *rx = t->rx_buf;
	unsigned int ch;
	int v;

	if (rx)
		memset(rx, 0, t->len);
	if (tx && rx && t->len >= 3 && tx[0] == 0x01 && (tx[1] & 0x80)) {
		ch = (tx[1] >> 4) & 7;
		v = clamp(READ_ONCE(counts[ch]), 0, 1023);
		rx[1] = (v >> 8) & 0x03;
		rx[2] = v & 0xff;
		WRITE_ONCE(conversions, conversions + 1);
	}
	/* Done synchronously: 0 tells the core the transfer is complete. */
	return 0;
}

static int adc_sim_probe(struct platform_device *pdev)
{
	struct spi_board_info info = {
		/* An id spidev's table knows, so spidev binds to it. */
		.modalias = "dh2228fv",
		.max_speed_hz = 2000000,
		.chip_select = 0,
		.mode = SPI_MODE_0,
	};
	struct spi_controller *ctlr;
	int ret;

	ctlr = devm_spi_alloc_master(&pdev->dev, 0);
	if (!ctlr)
		return -ENOMEM;
	ctlr->bus_num = -1;
	ctlr->num_chipselect = 1;
	ctlr->mode_bits = SPI_CPOL | SPI_CPHA;
	ctlr->bits_per_word_mask = SPI_BPW_MASK(8);
	ctlr->max_speed_hz = 2000000;
	ctlr->transfer_one = adc_sim_transfer_one;
	ret = devm_spi_register_controller(&pdev->dev, ctlr);
	if (ret)
		return ret;
	if (!spi_new_device(ctlr, &info))
		return -ENODEV;
	return 0;
}

static struct platform_driver adc_sim_driver = {
	.driver = { .name = "latchd-adc-sim" },
	.probe = adc_sim_probe,
};

static int __init adc_sim_init(void)
{
	int ret = platform_driver_register(&adc_sim_driver);

	if (ret)
		return ret;
	adc_sim_pdev = platform_device_register_simple("latchd-adc-sim", -1, NULL, 0);
	if (IS_ERR(adc_sim_pdev)) {
		platform_driver_unregister(&adc_sim_driver);
		return PTR_ERR(adc_sim_pdev);
	}
	return 0;
}

static void __exit adc_sim_exit(void)
{
	platform_device_unregister(adc_sim_pdev);
	platform_driver_unregister(&adc_sim_driver);
}

module_init(adc_sim_init);
module_exit(adc_sim_exit);
MODULE_DESCRIPTION("Virtual SPI controller with an MCP3008-class ADC (latchd VM rig)");
MODULE_LICENSE("GPL");
