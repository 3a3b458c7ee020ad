# Reference fit of R's Theoph data (datasets package) with nlme, for il2pkpd's pk1_oral test.
#
#   Rscript theoph_nlme.R      # writes data.csv (NONMEM format) and nlme.json here
#
# Model = models/pk1_oral.toml: one compartment, first-order absorption, no lag,
# log-normal IIV on ka, CL and V (diagonal), proportional residual error
# (varPower(fixed = 1): sd = sigma * individual prediction), maximum likelihood.
# Dose = Dose (mg/kg) * Wt (kg) in mg, so CL is in L/h and V in L (as nlmixr2's theo_sd).
# The pre-dose (time 0) samples are dropped from the fit: their prediction is 0 under a
# single-dose model, which a proportional error cannot weight (both fits use the same rows).
suppressPackageStartupMessages(library(nlme))
d <- as.data.frame(Theoph)
d$ID <- as.integer(as.character(d$Subject))
d <- d[order(d$ID, d$Time), ]
d$AMT <- round(d$Dose * d$Wt, 4)

# NONMEM-format dataset: one dose record per subject, then the observations (time 0 too,
# with MDV = 1 so that they are kept but not fitted).
dose <- unique(d[, c("ID", "Wt", "AMT")])
rows <- rbind(
  data.frame(ID = dose$ID, TIME = 0, AMT = dose$AMT, DV = 0, EVID = 1, MDV = 1, CMT = 1, WT = dose$Wt),
  data.frame(ID = d$ID, TIME = d$Time, AMT = 0, DV = d$conc, EVID = 0, MDV = as.integer(d$Time == 0), CMT = 2, WT = d$Wt)
)
rows <- rows[order(rows$ID, rows$TIME, -rows$EVID), ]
write.csv(rows, "data.csv", row.names = FALSE, quote = FALSE)

obs <- subset(d, Time > 0)
cp <- function(amt, t, lka, lcl, lv) {
  ka <- exp(lka); cl <- exp(lcl); v <- exp(lv); k <- cl / v
  amt * ka / (v * (ka - k)) * (exp(-k * t) - exp(-ka * t))
}
fit <- nlme(conc ~ cp(AMT, Time, lka, lcl, lv), data = obs,
            fixed = lka + lcl + lv ~ 1, random = pdDiag(lka + lcl + lv ~ 1), groups = ~ID,
            start = c(lka = 0.5, lcl = 1.0, lv = 3.5), weights = varPower(fixed = 1), method = "ML",
            control = nlmeControl(maxIter = 200, msMaxIter = 200, tolerance = 1e-8))
fx <- fixef(fit)
se <- sqrt(diag(vcov(fit)))
sds <- as.numeric(VarCorr(fit)[1:3, "StdDev"])
ci <- intervals(fit, which = "fixed")$fixed
num <- function(x) format(x, digits = 10)
json <- paste0('{\n',
  '  "source": "R ', R.version$major, ".", R.version$minor, ', nlme ', packageVersion("nlme"), ', nlme(method = \\"ML\\"), Theoph (datasets)",\n',
  '  "n_subjects": ', length(unique(obs$ID)), ', "n_observations": ', nrow(obs), ',\n',
  '  "log_likelihood": ', num(logLik(fit)), ',\n',
  '  "typical": {"ka": ', num(exp(fx[["lka"]])), ', "cl": ', num(exp(fx[["lcl"]])), ', "v": ', num(exp(fx[["lv"]])), '},\n',
  '  "log_typical_se": {"ka": ', num(se[["lka"]]), ', "cl": ', num(se[["lcl"]]), ', "v": ', num(se[["lv"]]), '},\n',
  '  "typical_ci95": {"ka": [', num(exp(ci["lka", "lower"])), ', ', num(exp(ci["lka", "upper"])), '], "cl": [',
     num(exp(ci["lcl", "lower"])), ', ', num(exp(ci["lcl", "upper"])), '], "v": [', num(exp(ci["lv", "lower"])), ', ', num(exp(ci["lv", "upper"])), ']},\n',
  '  "omega": {"ka": ', num(sds[1]), ', "cl": ', num(sds[2]), ', "v": ', num(sds[3]), '},\n',
  '  "sigma_cp": ', num(fit$sigma), '\n}\n')
writeLines(json, "nlme.json")
print(summary(fit))
